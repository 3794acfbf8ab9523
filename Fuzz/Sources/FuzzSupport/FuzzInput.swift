#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads structure out of a fuzzer's bytes: small integers, choices and lengths first, the rest
/// as data. Reading past the end yields zeros and empty slices, so every input means something
/// and a mutation of one byte changes one decision.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    /// The next byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next big-endian 16-bit integer.
    public mutating func uint16() -> UInt16 {
        UInt16(byte()) << 8 | UInt16(byte())
    }

    /// Up to `count` next bytes.
    public mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let available = min(max(0, count), remaining)
        defer { position += available }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + available])
    }

    /// Every byte not read yet.
    public mutating func rest() -> UnsafeRawBufferPointer { take(remaining) }
}

/// Fails the run when an invariant does not hold: prints why and aborts, which libFuzzer
/// reports as a crash and saves the input for.
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() {
        let text = "fuzz invariant broken at \(file):\(line): \(message())\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        abort()
    }
}
