import DequeModule
public import Logging
public import NIOCore

/// Group commit: gathers the durable writes of the broker and commits them in batches, one
/// transaction each, then runs what waited for them (acks, deliveries) on the broker's loop.
///
/// While one batch commits, the next one gathers, so a thousand publishers share one commit. A
/// store may take more than one batch at once (`PersistentStore.concurrentCommits`,
/// `singleWriter`). Callbacks run in submission order: an ack submitted after another is never
/// sent before it, even when it needed no write ([MQTT-4.6.0-2] order of acks).
///
/// A failed commit is retried with backoff until it succeeds; nothing waiting is released
/// meanwhile (QoS 1/2 publishers keep their messages and will re-send), and the failure is
/// logged once per change of state.
public final class GroupCommitWriter: @unchecked Sendable {
    public let store: any PersistentStore
    let eventLoop: any EventLoop
    var logger: Logger
    /// Largest number of operations in one transaction.
    public let maxBatch: Int

    private var pending: [StoreOperation] = []
    /// How many of `pending` each `submit` gave, oldest first: a batch takes whole submissions
    /// (`nextBatchCount`).
    private var pendingSubmissions: Deque<Int> = []
    /// Callbacks with the number of submitted operations that must be committed before each.
    private var waiting: Deque<(needs: UInt64, fence: SessionFence?, callback: () -> Void, leftOut: (() -> Void)?)> = []
    /// Fences the store found overtaken by a later claim (`PersistentStore.commit`), until the
    /// callbacks they guard have been passed over.
    private var staleFences: Set<SessionFence> = []
    private var submittedCount: UInt64 = 0
    private var committedCount: UInt64 = 0
    /// Batches being committed, oldest first. A batch that finished waits here until every
    /// older one has too, so callbacks still run in submission order.
    private var inFlight: Deque<Commit> = []
    private var failing = false
    /// The store refused the last commit for want of room (`StoreFull`: the spool is full):
    /// unlike a failing store, that pauses reading from publishers, QoS 0 ones too.
    private var storeFull = false
    /// How long a commit may run before the store counts as failing (a store that does not
    /// answer is as lost as one that refuses).
    public var stallTimeout = TimeAmount.seconds(5)
    /// Fewest operations worth a second, concurrent commit (see `PersistentStore.concurrentCommits`).
    public var minimumConcurrentBatch = 256
    /// How long a batch may gather while nothing is committing, when fewer than `gatherCount`
    /// operations wait (light load): a commit of a few writes costs the store nearly as much as
    /// one of many, so at 5,000 acks/s one commit per millisecond instead of one per message
    /// leaves the core to deliveries. Under load a batch is full (or gathers while the previous
    /// one commits) and nothing waits. Zero commits at once.
    public var commitDelay = TimeAmount.zero
    public var gatherCount = 64
    /// The same for writes that nothing waits for (no ack, no delivery: QoS 0 ingest rows,
    /// delivery states): they gather for `max(commitDelay, 5 ms)` or a full batch.
    var unwaitedDelay: TimeAmount { commitDelay == .zero ? .zero : max(commitDelay, .milliseconds(5)) }
    private var gatherTimer: Scheduled<Void>?
    private var gatherDeadline: NIODeadline?

    /// Confined to the writer's event loop, like the writer.
    private final class Commit: @unchecked Sendable {
        let operations: [StoreOperation]
        let appendOnly: Bool
        var done = false

        init(operations: [StoreOperation]) {
            self.operations = operations
            self.appendOnly = operations.allSatisfy(\.isAppendOnly)
        }
    }

    /// Runs after the callbacks of each committed batch (the broker flushes what they wrote).
    public var onCommitted: (() -> Void)?
    /// Runs instead of a callback whose fence the store found overtaken: nothing it guarded was
    /// committed, and the connection it came from no longer holds its session.
    public var onFenced: ((SessionFence) -> Void)?

    /// Writes waiting or committing above which the store counts as backlogged: clients whose
    /// messages cause writes nothing waits for (QoS 0 ingest rows) could otherwise outrun it
    /// without bound. The broker then stops reading from publishers until half of the backlog
    /// is committed (`onBacklogChanged`). Not while the store fails: then QoS 0 keeps flowing.
    public var backlogLimit = 32_768
    /// Called with true when the backlog passes `backlogLimit`, with false when it is back
    /// under half of it (or the store fails).
    public var onBacklogChanged: ((Bool) -> Void)?
    public private(set) var isBacklogged = false
    private var inFlightOperations = 0

    /// Commits and failures, for `/metrics` and `$SYS`.
    public private(set) var commits: UInt64 = 0
    public private(set) var committedOperations: UInt64 = 0
    public private(set) var failures: UInt64 = 0

    public init(store: any PersistentStore, eventLoop: any EventLoop, logger: Logger, maxBatch: Int = 4096) {
        (self.store, self.eventLoop, self.logger, self.maxBatch) = (store, eventLoop, logger, maxBatch)
    }

    /// True while writes are waiting or committing.
    public var isBusy: Bool { !inFlight.isEmpty || !pending.isEmpty || !waiting.isEmpty }
    /// Batches committing now (more than one only with `PersistentStore.concurrentCommits`).
    public var committingBatches: Int { inFlight.count }
    /// Writes submitted and not yet committed.
    public var outstandingWrites: Int { pending.count + inFlightOperations }
    /// True while the store refuses writes.
    public var isFailing: Bool { failing }
    /// Why the store is failing (the last error, or the stall), while it is.
    public private(set) var lastFailure: String?

    /// Queues `operations`; `then` runs on the loop once they, and everything submitted before
    /// them, are committed. Must be called on the broker's loop. With `fence`, `then` is passed
    /// over when the store left out the operations that fence guards: `leftOut` runs instead,
    /// then `onFenced`.
    public func submit(
        _ operations: [StoreOperation], fence: SessionFence? = nil, then: (() -> Void)? = nil, leftOut: (() -> Void)? = nil
    ) {
        eventLoop.preconditionInEventLoop()
        if operations.isEmpty && !isBusy {
            then?()
            return
        }
        pending.append(contentsOf: operations)
        if !operations.isEmpty { pendingSubmissions.append(operations.count) }
        submittedCount += UInt64(operations.count)
        if let then { waiting.append((submittedCount, fence, then, leftOut)) }
        startCommits()
        updateBacklog()
    }

    private func updateBacklog() {
        let outstanding = outstandingWrites
        let backlogged = storeFull || (failing ? false : isBacklogged ? outstanding > backlogLimit / 2 : outstanding >= backlogLimit)
        guard backlogged != isBacklogged else { return }
        isBacklogged = backlogged
        if backlogged {
            logger.warning(
                "store \(store.name) is \(outstanding) writes behind: reading from publishing clients pauses until it catches up")
        } else {
            logger.notice("store \(store.name) caught up: reading from publishing clients resumes")
        }
        onBacklogChanged?(backlogged)
    }

    /// Starts the next batch when nothing is committing; with a store that takes concurrent
    /// commits, also when every batch committing and the next one add only new rows.
    private func startCommits(force: Bool = false) {
        while !failing || inFlight.isEmpty {
            if inFlight.isEmpty {
                // Callbacks with nothing left to commit are run by `committed` (or at once by
                // `submit` when idle): they need no empty commit.
                guard !pending.isEmpty else { return }
                if !force, let delay = gatherDelay() {
                    let deadline = NIODeadline.now() + delay
                    if gatherDeadline.map({ deadline < $0 }) ?? true {
                        gatherTimer?.cancel()
                        gatherDeadline = deadline
                        gatherTimer = eventLoop.scheduleTask(deadline: deadline) {
                            self.gatherTimer = nil
                            self.gatherDeadline = nil
                            self.startCommits(force: true)
                        }
                    }
                    return
                }
                gatherTimer?.cancel()
                gatherTimer = nil
                gatherDeadline = nil
            } else {
                guard inFlight.count < store.concurrentCommits, pending.count >= minimumConcurrentBatch else { return }
                // Concurrent transactions: only batches of new rows, which commute.
                guard store.singleWriter || inFlight.allSatisfy(\.appendOnly) else { return }
            }
            let count = nextBatchCount()
            guard inFlight.isEmpty || store.singleWriter || pending.prefix(count).allSatisfy(\.isAppendOnly) else { return }
            let commit = Commit(operations: Array(pending.prefix(count)))
            pending.removeFirst(count)
            var taken = count
            while taken > 0, let first = pendingSubmissions.first {
                if first <= taken {
                    pendingSubmissions.removeFirst()
                } else {
                    pendingSubmissions[0] = first - taken
                }
                taken -= min(first, taken)
            }
            inFlightOperations += count
            inFlight.append(commit)
            run(commit)
            if pending.isEmpty { return }
        }
    }

    /// How many pending operations the next batch takes: whole submissions up to `maxBatch`, so
    /// what one event wrote (a message's ingest row and its queue rows) lands in one transaction
    /// — and, spooled, in one batch of the spool, which a replay's transaction never splits
    /// (`PostgresWrites.takenElsewhere` sees the row and its copies together). A submission
    /// larger than `maxBatch` alone is split.
    private func nextBatchCount() -> Int {
        var count = 0
        for size in pendingSubmissions {
            if count + size > maxBatch { return count == 0 ? maxBatch : count }
            count += size
        }
        return count
    }

    /// How long the next batch may still gather (see `commitDelay`); nil commits now.
    private func gatherDelay() -> TimeAmount? {
        guard !failing else { return nil }
        if waiting.isEmpty {
            return pending.count < maxBatch && unwaitedDelay > .zero ? unwaitedDelay : nil
        }
        return pending.count < gatherCount && commitDelay > .zero ? commitDelay : nil
    }

    /// Hands one batch to the store: a task of its own, or the ordered queue of a single writer.
    private func run(_ commit: Commit) {
        let store = self.store
        eventLoop.scheduleTask(in: stallTimeout) {
            guard !commit.done, !self.failing else { return }
            let seconds = self.stallTimeout.nanoseconds / 1_000_000_000
            self.failing = true
            self.failures += 1
            self.lastFailure = "no answer for \(seconds) s"
            self.updateBacklog()
            self.logger.error("store \(store.name) has not answered for \(seconds) s; acknowledgements wait until it does")
        }
        if store.singleWriter {
            orderedQueue.yield(commit)
        } else {
            let (loop, owner) = (eventLoop, WeakWriter(self))
            Task { await Self.apply(commit, to: store, reportingOn: loop, to: owner) }
        }
    }

    /// For a `singleWriter` store: one task applies the batches in submission order, so a
    /// failed batch is retried before any later one is touched.
    private lazy var orderedQueue: AsyncStream<Commit>.Continuation = {
        let (stream, continuation) = AsyncStream.makeStream(of: Commit.self)
        let (store, loop, owner) = (store, eventLoop, WeakWriter(self))  // the task must not keep the writer alive
        Task {
            for await commit in stream { await Self.apply(commit, to: store, reportingOn: loop, to: owner) }
        }
        return continuation
    }()

    deinit {
        if store.singleWriter { orderedQueue.finish() }
    }

    /// Applies a batch, retrying it with backoff (50 ms doubling to 5 s) until it succeeds; its
    /// callbacks keep waiting meanwhile. Results are reported on the writer's loop.
    private static func apply(
        _ commit: Commit, to store: any PersistentStore, reportingOn loop: any EventLoop,
        to owner: WeakWriter
    ) async {
        var delay = Duration.milliseconds(50)
        while true {
            do {
                let stale = try await store.commit(commit.operations)
                loop.execute { owner.writer?.committed(commit, stale: stale) }
                return
            } catch {
                loop.execute { owner.writer?.refused(error) }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// A batch is committed: everything whose operations are now all committed runs.
    private func committed(_ commit: Commit, stale: Set<SessionFence>) {
        staleFences.formUnion(stale)
        commits += 1
        committedOperations += UInt64(commit.operations.count)
        storeFull = false
        if failing {
            failing = false
            lastFailure = nil
            logger.notice("store \(store.name) is writable again")
        }
        commit.done = true
        var finished = false
        while let first = inFlight.first, first.done {
            inFlight.removeFirst()
            committedCount += UInt64(first.operations.count)
            inFlightOperations -= first.operations.count
            finished = true
        }
        // The next batch (what gathered meanwhile) goes to the store before the callbacks run,
        // so the store is not idle while hundreds of acks are written; what the callbacks
        // submit starts through `submit`.
        startCommits()
        if finished {
            // In submission order.
            while let first = waiting.first, first.needs <= committedCount {
                waiting.removeFirst()
                if let fence = first.fence, staleFences.contains(fence) {
                    first.leftOut?()
                    onFenced?(fence)
                } else {
                    first.callback()
                }
            }
            if waiting.isEmpty { staleFences.removeAll() }
            onCommitted?()
        }
        updateBacklog()
    }

    /// A commit failed; its batch stays in place with its callbacks and is tried again.
    private func refused(_ error: any Error) {
        failures += 1
        lastFailure = "\(error)"
        if error is StoreFull && !storeFull {
            storeFull = true
            logger.warning("store \(store.name): \(error); reading from publishing clients pauses")
            updateBacklog()
        }
        if !failing {
            failing = true
            logger.error("store \(store.name) refused a commit; acknowledgements wait, retrying until it succeeds: \(error)")
            updateBacklog()
        }
    }

    /// Resolves when everything submitted so far is committed (used at shutdown).
    public func drain() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            self.submit([], then: { promise.succeed(()) })
        }
        return promise.futureResult
    }
}

/// A weak reference to a writer that a task can hold (the writer is confined to its loop).
private final class WeakWriter: @unchecked Sendable {
    weak var writer: GroupCommitWriter?
    init(_ writer: GroupCommitWriter) { self.writer = writer }
}
