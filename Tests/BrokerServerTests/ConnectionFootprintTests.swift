import NIOCore
import Testing

@testable import BrokerServer

/// The pieces that keep an idle connection small (docs/benchmarks.md, "19,899 connections"):
/// each must behave as what it replaces.
@Suite struct ConnectionFootprintTests {
    // MARK: SubscriptionFilters, against a Set

    @Test func subscriptionFiltersAgreeWithASetThroughInsertsAndRemoves() {
        var filters = SubscriptionFilters()
        var model = Set<BytewiseKey>()
        var generator = SystemRandomNumberGenerator()
        let names = (0..<6).map { BytewiseKey("t/\($0)") }
        for _ in 0..<2_000 {
            let key = names.randomElement(using: &generator)!
            if Bool.random(using: &generator) {
                let inserted = filters.insert(key)
                #expect(inserted == model.insert(key).inserted)
            } else {
                let removed = filters.remove(key)
                #expect(removed == model.remove(key))
            }
            #expect(filters.count == model.count)
            #expect(filters.isEmpty == model.isEmpty)
            #expect(Set(filters) == model)
            for name in names { #expect(filters.contains(name) == model.contains(name)) }
        }
        filters.removeAll()
        #expect(filters.isEmpty && Array(filters).isEmpty)
    }

    @Test func oneFilterIsHeldInline() {
        var filters = SubscriptionFilters()
        filters.insert(BytewiseKey("dash/+/cpu"))
        #expect(Array(filters).map { String($0.text) } == ["dash/+/cpu"])
        let insertedAgain = filters.insert(BytewiseKey("dash/+/cpu"))
        #expect(!insertedAgain)
        filters.insert(BytewiseKey("dash/#"))
        filters.remove(BytewiseKey("dash/+/cpu"))
        #expect(Array(filters).map { String($0.text) } == ["dash/#"])
        let removedAbsent = filters.remove(BytewiseKey("nope"))
        #expect(removedAbsent == nil)
    }

    // MARK: CompactRecvAllocator, against NIO's adaptive allocator

    @Test func compactAllocatorFitsAnExistentialsInlineBuffer() {
        // Three words: an existential's inline room. More would put it in a box again.
        #expect(MemoryLayout<CompactRecvAllocator>.size <= 3 * MemoryLayout<Int>.size)
    }

    @Test(arguments: [(64, 512, 65_536), (64, 2_048, 65_536), (100, 300, 70_000), (2, 4, 16), (64, 64, 64)])
    func compactAllocatorChoosesNIOsSizes(minimum: Int, initial: Int, maximum: Int) {
        var compact = CompactRecvAllocator(minimum: minimum, initial: initial, maximum: maximum)
        var adaptive = AdaptiveRecvByteBufferAllocator(minimum: minimum, initial: initial, maximum: maximum)
        var generator = SystemRandomNumberGenerator()
        let allocator = ByteBufferAllocator()
        #expect(compact.nextBufferSize() == adaptive.nextBufferSize())
        for step in 0..<5_000 {
            // Runs of full reads and of small ones, so that sizes climb to the top and fall to
            // the bottom, as well as reads of any size.
            let next = compact.nextBufferSize()!
            let read: Int
            switch (step / 50) % 3 {
            case 0: read = next
            case 1: read = Int.random(in: 0...max(0, next / 2), using: &generator)
            default: read = Int.random(in: 0...next, using: &generator)
            }
            let compactMayGrow = compact.record(actualReadBytes: read)
            let adaptiveMayGrow = adaptive.record(actualReadBytes: read)
            #expect(compactMayGrow == adaptiveMayGrow)
            #expect(compact.nextBufferSize() == adaptive.nextBufferSize())
            #expect(compact.buffer(allocator: allocator).capacity == adaptive.buffer(allocator: allocator).capacity)
        }
    }

    // MARK: Connection state kept out of line

    @Test func clientsOfAnOpenBrokerShareOneIdentityBox() {
        #expect(IdentityBox.shared(for: .open, authenticator: nil) === IdentityBox.open)
        let token = Identity(kind: .jwt, client: "alice", expiresAt: 1, permissions: .everything)
        let box = IdentityBox.shared(for: token, authenticator: nil)
        #expect(box !== IdentityBox.open && box.identity == token)
    }

    @Test func anonymousClientsOfABrokerWithCredentialsShareOneIdentityBox() throws {
        var configuration = BrokerConfiguration()
        configuration.clientTokens = ["secret"]
        configuration.anonymousSubscribe = ["public/#"]
        let authenticator = Authenticator(configuration: configuration, jwt: nil)
        let anonymous = Identity(kind: .anonymous, permissions: try #require(authenticator.anonymous))
        let shared = try #require(authenticator.anonymousIdentity)
        #expect(IdentityBox.shared(for: anonymous, authenticator: authenticator) === shared)
        #expect(IdentityBox.shared(for: .open, authenticator: authenticator) === IdentityBox.open)
    }
}
