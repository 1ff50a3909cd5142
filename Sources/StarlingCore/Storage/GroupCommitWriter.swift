import DequeModule
public import Logging
public import NIOCore

/// Group commit: gathers the durable writes of the broker and commits them in batches, one
/// transaction each, then runs what waited for them (acks, deliveries) on the broker's loop.
///
/// While one batch commits, the next one gathers, so a thousand publishers share one commit and
/// no timer is needed. Callbacks run in submission order: an ack submitted after another is
/// never sent before it, even when it needed no write ([MQTT-4.6.0-2] order of acks).
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
    /// Callbacks with the number of submitted operations that must be committed before each.
    private var waiting: Deque<(needs: UInt64, callback: () -> Void)> = []
    private var submittedCount: UInt64 = 0
    private var committedCount: UInt64 = 0
    private var committing = false
    private var failing = false
    private var retryDelay = TimeAmount.milliseconds(50)
    /// Counts commits started, so a watchdog can tell whether one is still running.
    private var generation: UInt64 = 0
    /// How long a commit may run before the store counts as failing (a store that does not
    /// answer is as lost as one that refuses).
    public var stallTimeout = TimeAmount.seconds(5)

    /// Runs after the callbacks of each committed batch (the broker flushes what they wrote).
    public var onCommitted: (() -> Void)?

    /// Commits and failures, for `/metrics` and `$SYS`.
    public private(set) var commits: UInt64 = 0
    public private(set) var committedOperations: UInt64 = 0
    public private(set) var failures: UInt64 = 0

    public init(store: any PersistentStore, eventLoop: any EventLoop, logger: Logger, maxBatch: Int = 4096) {
        self.store = store
        self.eventLoop = eventLoop
        self.logger = logger
        self.maxBatch = maxBatch
    }

    /// True while writes are waiting or committing.
    public var isBusy: Bool { committing || !pending.isEmpty || !waiting.isEmpty }
    /// True while the store refuses writes.
    public var isFailing: Bool { failing }

    /// Queues `operations`; `then` runs on the loop once they, and everything submitted before
    /// them, are committed. Must be called on the broker's loop.
    public func submit(_ operations: [StoreOperation], then: (() -> Void)? = nil) {
        eventLoop.preconditionInEventLoop()
        if operations.isEmpty && !isBusy {
            then?()
            return
        }
        pending.append(contentsOf: operations)
        submittedCount += UInt64(operations.count)
        if let then { waiting.append((submittedCount, then)) }
        startCommitIfIdle()
    }

    private func startCommitIfIdle() {
        guard !committing, !pending.isEmpty || !waiting.isEmpty else { return }
        committing = true
        let count = min(pending.count, maxBatch)
        let batch = Array(pending.prefix(count))
        pending.removeFirst(count)
        let store = self.store
        let loop = eventLoop
        generation &+= 1
        let started = generation
        loop.scheduleTask(in: stallTimeout) {
            guard self.committing, self.generation == started, !self.failing else { return }
            self.failing = true
            self.failures += 1
            self.logger.error("store \(store.name) has not answered for \(self.stallTimeout.nanoseconds / 1_000_000_000) s; acknowledgements wait until it does")
        }
        let promise = loop.makePromise(of: Void.self)
        promise.completeWithTask { try await store.apply(batch) }
        promise.futureResult.whenComplete { result in
            switch result {
            case .success:
                self.commits += 1
                self.committedOperations += UInt64(batch.count)
                if self.failing {
                    self.failing = false
                    self.logger.notice("store \(store.name) is writable again")
                }
                self.retryDelay = .milliseconds(50)
                self.committing = false
                // Everything whose operations are now all committed runs, in submission order.
                self.committedCount += UInt64(batch.count)
                while let first = self.waiting.first, first.needs <= self.committedCount {
                    self.waiting.removeFirst()
                    first.callback()
                }
                self.onCommitted?()
                self.startCommitIfIdle()
            case .failure(let error):
                self.failures += 1
                if !self.failing {
                    self.failing = true
                    self.logger.error("store \(store.name) refused a commit; acknowledgements wait, retrying until it succeeds: \(error)")
                }
                // Put the batch back in front, keep the callbacks, retry later.
                self.pending.insert(contentsOf: batch, at: 0)
                let delay = self.retryDelay
                self.retryDelay = min(self.retryDelay * 2, .seconds(5))
                loop.scheduleTask(in: delay) {
                    self.committing = false
                    self.startCommitIfIdle()
                }
            }
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
