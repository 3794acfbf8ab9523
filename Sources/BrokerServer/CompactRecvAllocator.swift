import NIOCore

/// NIO's adaptive receive-buffer sizing (`AdaptiveRecvByteBufferAllocator`: double the next
/// buffer after a read that fills one, halve it after two reads in a row that fill half or less)
/// in 13 bytes instead of 33. A channel keeps its allocator in an existential, whose inline room
/// is 24 bytes: NIO's own is boxed there, 49 bytes of heap for every connection.
/// `CompactRecvAllocatorTests` checks that both choose the same sizes.
struct CompactRecvAllocator: RecvByteBufferAllocator {
    private let minimum: UInt32
    private let maximum: UInt32
    private var next: UInt32
    private var decreaseNow = false

    /// Sizes are rounded as NIO rounds them: `minimum` and `initial` down to a power of two,
    /// `maximum` up to one.
    init(minimum: Int, initial: Int, maximum: Int) {
        precondition(0 < minimum && minimum <= initial && initial <= maximum && maximum <= 1 << 30)
        self.minimum = UInt32(Self.powerOfTwo(atMost: minimum))
        self.next = UInt32(Self.powerOfTwo(atMost: initial))
        let atMost = Self.powerOfTwo(atMost: maximum)
        self.maximum = UInt32(atMost == maximum ? maximum : atMost << 1)
    }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(next))
    }

    func nextBufferSize() -> Int? {
        Int(next)
    }

    mutating func record(actualReadBytes: Int) -> Bool {
        let half = next >> 1
        let double = next << 1
        if actualReadBytes <= Int(half), half >= minimum {
            if decreaseNow { next = half }
            decreaseNow.toggle()
            return false
        }
        decreaseNow = false
        if actualReadBytes >= Int(next), double <= maximum {
            next = double
            return true
        }
        return false
    }

    private static func powerOfTwo(atMost value: Int) -> Int {
        1 << (Int.bitWidth - 1 - value.leadingZeroBitCount)
    }
}
