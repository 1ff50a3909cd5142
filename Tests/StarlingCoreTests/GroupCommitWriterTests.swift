import Logging
import NIOCore
import NIOPosix
import StarlingCore
import Synchronization
import Testing

/// A store for the writer's tests: only `apply` matters; the rest does nothing.
protocol ApplyOnlyStore: PersistentStore {}

extension ApplyOnlyStore {
    func migrate() async throws {}
    func load() async throws -> StoredState { StoredState() }
    func collectGarbage() async throws -> Int { 0 }
    func enforceRetention(before _: Int64?, now _: Int64) async throws -> Int { 0 }
    func ping() async throws {}
    func loadUsers() async throws -> [StoredUser] { [] }
    func saveUser(_: StoredUser) async throws {}
    func deleteUser(_: String) async throws -> Bool { false }
}

/// A store that only counts what it is given.
final class CountingStore: ApplyOnlyStore {
    let name = "counting"
    let applied = Mutex<Int>(0)
    func apply(_ operations: [StoreOperation]) async throws { applied.withLock { $0 += operations.count } }
}

/// A store that takes two commits at once and holds each until the test releases it.
final class GatedStore: ApplyOnlyStore {
    let name = "gated"
    let concurrentCommits = 2
    /// The operation count of each commit, as it starts.
    let starts: AsyncStream<Int>
    private let startsContinuation: AsyncStream<Int>.Continuation
    private let gates = Mutex<[Int: CheckedContinuation<Void, Never>]>([:])
    private let started = Mutex(0)

    init() { (starts, startsContinuation) = AsyncStream.makeStream() }

    func apply(_ operations: [StoreOperation]) async throws {
        guard !operations.isEmpty else { return }
        let number = started.withLock {
            $0 += 1; return $0
        }
        await withCheckedContinuation { continuation in
            gates.withLock { $0[number] = continuation }
            startsContinuation.yield(operations.count)
        }
    }

    /// Lets the `number`th commit (1-based) finish.
    func release(_ number: Int) { gates.withLock { $0.removeValue(forKey: number) }?.resume() }
}

/// A single-writer store whose first commit fails; it records the batches it is given.
final class FlakySingleWriterStore: ApplyOnlyStore {
    let name = "flaky"
    let concurrentCommits = 2
    let singleWriter = true
    let attempts = Mutex<[Int]>([])
    func apply(_ operations: [StoreOperation]) async throws {
        let first = attempts.withLock {
            $0.append(operations.count); return $0.count == 1
        }
        if first { throw CancellationError() }
    }
}

/// A store that records the operation count of each batch it is given.
final class BatchRecordingStore: ApplyOnlyStore {
    let name = "recording"
    let batches = Mutex<[Int]>([])
    func apply(_ operations: [StoreOperation]) async throws { batches.withLock { $0.append(operations.count) } }
}

@Suite("Group commit")
struct GroupCommitWriterTests {
    static func operation(_ n: Int) -> StoreOperation { .addInboundQoS2(clientID: "c", packetID: UInt16(n % 65_000 + 1)) }

    @Test("under continuous load each callback runs as soon as its own operations are committed, in order")
    func noStarvation() async throws {
        try await Self.withWriter(over: CountingStore(), maxBatch: 10) { writer, _, loop in
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
        }
    }

    @Test(
        "a batch takes whole submissions (what one event wrote: a message's ingest row with its queue rows, so a spooled batch holds both for the replay); only a submission larger than a batch is split"
    )
    func batchesTakeWholeSubmissions() async throws {
        try await Self.withWriter(over: BatchRecordingStore(), maxBatch: 4) { writer, store, loop in
            try await loop.submit { () -> EventLoopFuture<Void> in
                let promise = loop.makePromise(of: Void.self)
                for first in stride(from: 0, to: 12, by: 3) { writer.submit((first..<first + 3).map(Self.operation)) }
                writer.submit((12..<21).map(Self.operation)) { promise.succeed(()) }
                return promise.futureResult
            }.get().get()
            // The first went alone (nothing was committing); then 3 + 3 > 4 each time.
            #expect(store.batches.withLock { $0 } == [3, 3, 3, 3, 4, 4, 1])
        }
    }

    /// Runs `body` with a writer over `store` on a one-thread event loop of its own.
    /// Submits `first` then `second` (named by `names`) in one turn of the loop: the batches
    /// committing once both are in, and each submission's name as its callback runs.
    static func submitTwo(
        _ writer: GroupCommitWriter, on loop: any EventLoop, _ first: [StoreOperation], _ second: [StoreOperation],
        names: (String, String) = ("first", "second")
    ) async throws -> (committing: Int, done: AsyncStream<String>.Iterator) {
        let (done, doneContinuation) = AsyncStream.makeStream(of: String.self)
        let committing = try await loop.submit {
            writer.submit(first) { doneContinuation.yield(names.0) }
            writer.submit(second) { doneContinuation.yield(names.1) }
            return writer.committingBatches
        }.get()
        return (committing, done.makeAsyncIterator())
    }

    static func withWriter<Store: PersistentStore>(
        over store: Store, maxBatch: Int, _ body: (GroupCommitWriter, Store, any EventLoop) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let writer = GroupCommitWriter(store: store, eventLoop: loop, logger: Logger(label: "test"), maxBatch: maxBatch)
        writer.minimumConcurrentBatch = 1
        try await body(writer, store, loop)
        try await group.shutdownGracefully()
    }

    static func newRows(_ range: Range<Int>) -> [StoreOperation] {
        range.map {
            .saveMessage(
                StoredMessage(
                    id: Int64($0), topic: "t", payload: ByteBuffer(), qos: .atLeastOnce, retain: false,
                    properties: [], expiresAt: nil, publisher: "p"))
        }
    }

    @Test("with a store that takes concurrent commits, a batch of new rows commits beside another; callbacks keep submission order")
    func concurrentNewRows() async throws {
        try await Self.withWriter(over: GatedStore(), maxBatch: 300) { writer, store, loop in
            let (committing, done) = try await Self.submitTwo(writer, on: loop, Self.newRows(0..<300), Self.newRows(300..<600))
            #expect(committing == 2)
            var order = done
            var starts = store.starts.makeAsyncIterator()
            #expect(await starts.next() == 300)
            #expect(await starts.next() == 300)
            store.release(2)  // the second batch commits first: its callback still waits for the first's
            store.release(1)
            #expect(await order.next() == "first")
            #expect(await order.next() == "second")
        }
    }

    @Test("a batch that changes existing rows never commits beside another")
    func noConcurrencyForChanges() async throws {
        try await Self.withWriter(over: GatedStore(), maxBatch: 300) { writer, store, loop in
            let (committing, done) = try await Self.submitTwo(
                writer, on: loop, Self.newRows(0..<300), [.updateDelivery(clientID: "c", sequence: 1, state: .sent, packetID: 1)],
                names: ("new rows", "update"))
            #expect(committing == 1)
            var order = done
            var starts = store.starts.makeAsyncIterator()
            #expect(await starts.next() == 300)
            store.release(1)
            #expect(await order.next() == "new rows")
            #expect(await starts.next() == 1)  // the update starts only now
            store.release(2)
            #expect(await order.next() == "update")
        }
    }

    @Test("a backlog past the limit is reported, and its end once half of it is committed")
    func backlog() async throws {
        try await Self.withWriter(over: GatedStore(), maxBatch: 100) { writer, store, loop in
            writer.backlogLimit = 150
            writer.minimumConcurrentBatch = 1000  // one commit at a time here
            let (changes, changesContinuation) = AsyncStream.makeStream(of: Bool.self)
            let reported = try await loop.submit {
                writer.onBacklogChanged = { changesContinuation.yield($0) }
                writer.submit(Self.newRows(0..<100))  // committing: 100 outstanding
                writer.submit(Self.newRows(100..<149))  // 149: under the limit
                let before = writer.isBacklogged
                writer.submit(Self.newRows(149..<150))  // 150: at the limit
                return (before, writer.isBacklogged)
            }.get()
            #expect(reported == (false, true))
            var events = changes.makeAsyncIterator()
            #expect(await events.next() == true)
            var starts = store.starts.makeAsyncIterator()
            #expect(await starts.next() == 100)
            store.release(1)  // 50 left: half of the limit or less ends the backlog
            #expect(await events.next() == false)
            #expect(await starts.next() == 50)
            store.release(2)
        }
    }

    @Test(
        "a single-writer store gets the next batch, whatever it holds, queued behind the committing one; a failed batch is retried before it"
    )
    func singleWriterInOrder() async throws {
        try await Self.withWriter(over: FlakySingleWriterStore(), maxBatch: 100) { writer, store, loop in
            let (committing, done) = try await Self.submitTwo(
                writer, on: loop,
                [
                    .updateDelivery(clientID: "c", sequence: 1, state: .sent, packetID: 1),
                    .updateDelivery(clientID: "c", sequence: 2, state: .sent, packetID: 2)
                ],
                [
                    .deleteDelivery(clientID: "c", sequence: 1), .deleteDelivery(clientID: "c", sequence: 2),
                    .deleteDelivery(clientID: "c", sequence: 3)
                ])
            #expect(committing == 2)  // changes to existing rows, queued all the same
            var order = done
            #expect(await order.next() == "first")
            #expect(await order.next() == "second")
            #expect(store.attempts.withLock { $0 } == [2, 2, 3])  // the failed first batch again, then the second
        }
    }
}
