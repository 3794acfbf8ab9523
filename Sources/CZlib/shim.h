// The system zlib (Debian: zlib1g-dev). deflateInit2 and inflateInit2 are macros, which Swift
// cannot call, hence the inline wrappers.
#include <zlib.h>

static inline int czlib_deflate_init_raw(z_streamp stream, int level, int windowBits, int memLevel) {
    return deflateInit2(stream, level, Z_DEFLATED, -windowBits, memLevel, Z_DEFAULT_STRATEGY);
}

static inline int czlib_inflate_init_raw(z_streamp stream, int windowBits) {
    return inflateInit2(stream, -windowBits);
}
