import Logging
import NIOCore
import NIOPosix
import StarlingCore
import Synchronization
import Testing

/// A store that only counts what it is given.
final class CountingStore: PersistentStore {
    let name = "counting"
    let applied = Mutex<Int>(0)
    func migrate() async throws {}
    func load() async throws -> StoredState { StoredState() }
    func apply(_ operations: [StoreOperation]) async throws { applied.withLock { $0 += operations.count } }
    func collectGarbage() async throws -> Int { 0 }
    func enforceRetention(before _: Int64?, now _: Int64) async throws -> Int { 0 }
}

@Suite("Group commit")
struct GroupCommitWriterTests {
    static func operation(_ n: Int) -> StoreOperation { .addInboundQoS2(clientID: "c", packetID: UInt16(n % 65_000 + 1)) }

    @Test("under continuous load each callback runs as soon as its own operations are committed, in order")
    func noStarvation() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let store = CountingStore()
        let writer = GroupCommitWriter(store: store, eventLoop: loop, logger: Logger(label: "test"), maxBatch: 10)
        // Each callback records how many operations had been committed when it ran, and submits
        // more work, so the writer never runs dry until 200 submissions.
        let results = try await loop.submit { () -> EventLoopFuture<[(needs: UInt64, committed: UInt64)]> in
            let promise = loop.makePromise(of: [(needs: UInt64, committed: UInt64)].self)
            var seen: [(needs: UInt64, committed: UInt64)] = []
            var submitted: UInt64 = 0
            func submit() {
                submitted += 7
                let needs = submitted
                writer.submit((0..<7).map(Self.operation)) {
                    seen.append((needs, writer.committedOperations))
                    if seen.count == 200 { promise.succeed(seen) } else if submitted < 200 * 7 { submit() }
                }
            }
            for _ in 0..<20 { submit() }
            return promise.futureResult
        }.get().get()
        #expect(results.count == 200)
        #expect(results.map(\.needs) == results.map(\.needs).sorted())  // in submission order
        for (needs, committed) in results {
            // Its operations are committed, and it did not wait for later batches.
            #expect(committed >= needs)
            #expect(committed - needs < 10)
        }
        try await group.shutdownGracefully()
    }
}
