import Foundation
public import Logging
import NIOCore
import Synchronization

/// A store that commits to its primary (PostgreSQL) and, while the primary cannot be reached,
/// to a local spool instead (README "SQLite fallback"; docs/architecture.md, G1: acknowledged means
/// durable, on this node's disk while spooling). When the primary answers again, the spool is
/// replayed into it in order, in batches, while new batches keep going to the spool behind it;
/// when the spool is empty, commits go to the primary again.
///
/// - A commit that fails because the primary is away (`PersistentStore.isUnreachable`), or that
///   has not answered within `switchTimeout` (750 ms), is committed to the spool: a client
///   waits at most that much longer for its acknowledgement at the switch. A commit the
///   primary refuses (a constraint, a bug) is not spooled: it fails, and the group commit
///   retries it.
/// - Each replayed transaction records the last spool batch it holds (`markReplayed`), so a
///   replay cut short (the node killed) resumes after it. The one batch that was committing
///   when the primary went away may have been committed as well as spooled (`inDoubt`):
///   replaying it is harmless — session writes are upserts fenced by epoch, QoS 1/2 ingest
///   rows follow the duplicate rule (`IngestRecord.isDuplicate`), QoS 0 ones are skipped when
///   an identical row exists (`IngestRecord.mayBeStored`).
/// - A commit to the primary that times out is cancelled (a request still waiting in a pool never
///   runs), and the replay first ends every earlier session of this node with the primary
///   (`ReplayLine.endEarlierSessions`), so no commit tried before the switch can land behind the
///   replay. Probes and the replay go through `line`, never through the live path's pool, so
///   the replay starts within a probe of the primary answering (G7).
/// - The spool is bounded (`maxBytes`): when full, a batch fails with `StoreFull` and waits.
public actor FallbackStore: PersistentStore {
    public nonisolated let name: String
    public nonisolated let primary: any PersistentStore
    public nonisolated let spool: any StoreSpool
    /// The replay's own way to the primary (`ReplayLine`): probes and replays never wait on the
    /// live path's pool.
    public nonisolated let line: any ReplayLine
    public nonisolated let switchTimeout: Duration
    /// How long a commit past `switchTimeout` is awaited, while the primary answers, before the
    /// batch goes to the spool in doubt (`commit`).
    public nonisolated let lateAnswerTimeout: Duration
    public nonisolated let maxBytes: Int
    /// How often the primary is probed while spooling.
    public nonisolated let probeInterval: Duration
    /// Most operations replayed in one transaction.
    public nonisolated let replayBatch: Int
    /// Tests only (`STARLING_TEST_REPLAY_PAUSE`): replay one spool batch per transaction and
    /// stop for good after this many, so a test can kill the node in the middle of a replay.
    public nonisolated let pauseReplayAfter: Int?
    let logger: Logger
    let statusBox = Mutex(FallbackStatus())
    var spoolAppendsInFlight = 0
    /// Batches a commit to the primary was tried for before they went to the spool: the next
    /// ones appended are marked so (`SpooledBatch.inDoubt`; a retried batch keeps the mark).
    var batchesInDoubt = 0
    /// The last stretch of a replay: new commits wait for it (`handoverWaiters`) instead of
    /// adding to the spool, so a replay ends even while clients keep publishing.
    var handingOver = false
    var handoverWaiters: [CheckedContinuation<Void, Never>] = []
    var replayer: Task<Void, Never>?
    /// `stopReplaying` was called: no replay starts again.
    var stopped = false
    var migrated = false
    var onRecovered: (@Sendable () -> Void)?
    var onModeChange: (@Sendable (FallbackStatus.Mode) -> Void)?

    public init(
        primary: any PersistentStore, spool: any StoreSpool, line: (any ReplayLine)? = nil, logger: Logger,
        switchTimeout: Duration = .milliseconds(750), lateAnswerTimeout: Duration = .seconds(5), maxBytes: Int = 1 << 30,
        probeInterval: Duration = .seconds(1), replayBatch: Int = 4096, pauseReplayAfter: Int? = nil
    ) {
        self.lateAnswerTimeout = lateAnswerTimeout
        self.line = line ?? PrimaryLine(primary: primary)
        self.pauseReplayAfter = pauseReplayAfter
        self.name = primary.name
        (self.primary, self.spool, self.logger, self.switchTimeout, self.maxBytes) = (primary, spool, logger, switchTimeout, maxBytes)
        self.probeInterval = probeInterval
        self.replayBatch = pauseReplayAfter == nil ? replayBatch : 1
    }

    /// Where the store is, for readiness, `/metrics` and `$SYS`; readable from any thread.
    public nonisolated var status: FallbackStatus { statusBox.withLock { $0 } }

    public nonisolated var concurrentCommits: Int { primary.concurrentCommits }

    /// Runs when a replay has emptied the spool and commits go to the primary again.
    /// Set after a start on the spool; if the replay ended before, it runs at once.
    public func setOnRecovered(_ action: (@Sendable () -> Void)?) {
        onRecovered = action
        if let action, status.mode == .direct, status.stateDeferred { action() }
    }

    /// Runs with each new mode (the broker refuses what needs the primary while it is away).
    public func setOnModeChange(_ action: (@Sendable (FallbackStatus.Mode) -> Void)?) { onModeChange = action }

    func setMode(_ mode: FallbackStatus.Mode) {
        let changed = statusBox.withLock { status in
            defer { status.mode = mode }
            return status.mode != mode
        }
        if changed { onModeChange?(mode) }
    }

    // MARK: Start

    /// Migrates the primary; when it cannot be reached, starts on the spool instead (loudly):
    /// the primary is migrated before the replay.
    public func migrate() async throws {
        try await refreshTotals()
        switch await attempt({ try await self.primary.migrate() }, timeout: .seconds(5)) {
        case .committed:
            migrated = true
        case .refused(let error):
            throw error
        case .unreachable(let why):
            enterSpooling(because: why, atStart: true)
        }
    }

    /// Replays what an earlier start left in the spool, then loads from the primary. Started on
    /// the spool, it loads nothing: `FallbackStatus.stateDeferred` is set, and the state is
    /// loaded when the primary is back (`BrokerService` adopts it then).
    public func load() async throws -> StoredState {
        if status.mode == .direct && status.spooledBatches > 0 {
            logger.notice("the spool holds \(status.spooledBatches) batches from an earlier run: replaying them before loading")
            setMode(.replaying)
            switch await replay() {
            case .committed: break
            case .unreachable(let why): enterSpooling(because: why, atStart: true)
            case .refused(let error): enterSpooling(because: "the replay failed: \(error)", atStart: true)
            }
        } else if status.mode == .direct {
            // An earlier start killed after its last replayed batch but before it said the replay
            // was over left it marked pending: while this start holds the node's lease, claims
            // of its sessions would wait for a replay that never comes (G7). Best effort.
            let (line, spoolID) = (self.line, spool.id)
            _ = await attempt({ try await line.replayPending(spool: spoolID, false) }, timeout: .seconds(5), onTimeout: { line.reset() })
        }
        if status.mode == .direct {
            do {
                let state = try await primary.load()
                statusBox.withLock { $0.stateDeferred = false }
                return state
            } catch let error where primary.isUnreachable(error) {
                // Gone between the migration (or the replay) and the load — a database restarted
                // at the wrong moment: the node starts on the spool, as if it had been away at the
                // migration, rather than failing its start (G7: a fault heals by itself).
                enterSpooling(because: "\(error)", atStart: true)
            }
        }
        statusBox.withLock { $0.stateDeferred = true }
        return StoredState()
    }

    // MARK: Commits

    public func apply(_ operations: [StoreOperation]) async throws {
        _ = try await commit(operations)
    }

    /// Commits to the primary (fences checked there), or to the spool with each fence stamped
    /// with the time of spooling (`SessionFence.spooledAt`: the replay checks it).
    public func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        while handingOver {
            await withCheckedContinuation { waiter in
                handoverWaiters.append(waiter)
                statusBox.withLock { $0.commitsWaitingForReplay = handoverWaiters.count }
            }
        }
        var batch = operations
        var retries = 0
        while status.mode == .direct {
            let attempt = batch
            let call = PrimaryCall()
            switch await attemptCommit({ try await self.primary.commit(attempt) }, timeout: switchTimeout, call: call) {
            case .committed(let stale):
                return stale
            case .refused(let error):
                throw error
            case .unreachable(let why):
                // It may have committed all the same (a lost answer, or a late commit): what
                // goes again is in doubt (`replayed`), whichever way it goes.
                batch = operations.map { Self.replayed($0, inDoubt: true) }
                if retries < 2, await primaryAnswers() {
                    // The primary answers: this attempt was slow, or only its connection was
                    // lost (ended by the database, a node resumed after a freeze). Not beside
                    // an attempt that may still commit: one that had not yet reached the
                    // database would land after the retry, not as a re-send, and store its
                    // rows twice. So its end is awaited (bounded); then the primary takes the
                    // batch again, fences checked. Still running: in doubt, to the spool, whose
                    // replay ends this node's earlier sessions first.
                    switch await call.outcome(within: lateAnswerTimeout) {
                    case .ended(.committed(let stale)):
                        return stale
                    case .ended(.refused(let error)):
                        throw error
                    case .ended(.unreachable):
                        retries += 1
                        continue
                    case .unknown:
                        break
                    }
                }
                batchesInDoubt += 1
                if status.mode == .direct { enterSpooling(because: why, atStart: false) }
            }
        }
        // No suspension between the look at the mode and the append's count (`replay`).
        try await appendToSpool(operations)  // the replay marks every record as replayed
        return []
    }

    /// Whether the primary answers a fresh connection at once (the replay's line, 1 s).
    func primaryAnswers() async -> Bool {
        let line = self.line
        if case .committed = await attempt({ try await line.ping() }, timeout: .seconds(1), onTimeout: { line.reset() }) { return true }
        return false
    }

    func appendToSpool(_ operations: [StoreOperation]) async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let data = SpoolCoding.encode(StoreOperation.spooled(operations, at: now))
        let held = status.spooledBytes
        guard held + data.readableBytes <= maxBytes || held == 0 else {
            statusBox.withLock { $0.full = true }
            throw StoreFull(bytes: held, limit: maxBytes)
        }
        spoolAppendsInFlight += 1
        defer { spoolAppendsInFlight -= 1 }
        let inDoubt = batchesInDoubt > 0
        _ = try await spool.append(data, inDoubt: inDoubt)
        if inDoubt { batchesInDoubt -= 1 }
        statusBox.withLock {
            $0.full = false
            $0.spooledBatches += 1
            $0.spooledBytes += data.readableBytes
            $0.spooledOperations += UInt64(operations.count)
        }
    }

    func enterSpooling(because why: String, atStart: Bool) {
        setMode(.spooling)
        statusBox.withLock {
            $0.outages += 1
            $0.outageStarted = ContinuousClock.now
            $0.lastError = why
        }
        if atStart {
            logger.critical(
                """
                \(primary.name) cannot be reached at start (\(why)): STARTING ON THE SPOOL. Acknowledged messages are committed \
                to the local spool and replayed when \(primary.name) is back; persistent sessions are restored then
                """)
        } else {
            logger.error(
                "\(primary.name) cannot be reached (\(why)): commits go to the local spool until it is back, then the spool is replayed")
        }
        if replayer == nil && !stopped {
            replayer = Task { await self.probeAndReplay() }
        }
    }

    /// Ends a replay in progress, or the probes of a spooling store, and waits for it (the node
    /// stops: its spool stays for the next start). Commits after this still go to the spool.
    public func stopReplaying() async {
        stopped = true
        let running = replayer
        running?.cancel()
        await running?.value
    }

    // MARK: The primary, with a time limit

    enum Attempt {
        /// With the fences a later claim had overtaken (`PersistentStore.commit`).
        case committed(Set<SessionFence>)
        case refused(any Error)
        case unreachable(String)

        /// What a call's `error` says: the primary away (`isUnreachable`), or a refusal.
        init(_ error: any Error, from primary: any PersistentStore) {
            self = primary.isUnreachable(error) ? .unreachable("\(error)") : .refused(error)
        }
    }

    /// Runs `body` against the primary; an answer later than `timeout` counts as unreachable:
    /// the call is cancelled (a request waiting for a pooled connection never runs) and
    /// `onTimeout` runs (the replay line drops its connection).
    func attempt(
        _ body: @escaping @Sendable () async throws -> Void, timeout: Duration,
        onTimeout: (@Sendable () -> Void)? = nil
    ) async -> Attempt {
        await attemptCommit(
            { () async throws -> Set<SessionFence> in
                try await body()
                return []
            }, timeout: timeout, onTimeout: onTimeout)
    }

    /// `call`: where the outcome goes even after the time limit (`PrimaryCall`).
    func attemptCommit(
        _ body: @escaping @Sendable () async throws -> Set<SessionFence>, timeout: Duration,
        onTimeout: (@Sendable () -> Void)? = nil, call: PrimaryCall? = nil
    ) async -> Attempt {
        let race = Race()
        let primary = self.primary
        return await withCheckedContinuation { (continuation: CheckedContinuation<Attempt, Never>) in
            race.arm(continuation)
            let timer = TimerBox()
            let work = Task {
                let outcome: Attempt
                do {
                    outcome = .committed(try await body())
                } catch {
                    outcome = Attempt(error, from: primary)
                }
                // A failure after its cancellation at the time limit may be that cancellation:
                // whether its statements reached the database is not known.
                if case .committed = outcome {
                    call?.finish(.ended(outcome))
                } else {
                    call?.finish(Task.isCancelled ? .unknown : .ended(outcome))
                }
                race.finish(outcome)
                timer.task.withLock { $0?.cancel() }
            }
            timer.task.withLock { timer in
                timer = Task {
                    try await Task.sleep(for: timeout)
                    guard race.finish(.unreachable("no answer within \(timeout)")) else { return }
                    work.cancel()
                    onTimeout?()
                }
            }
        }
    }

    // MARK: Forwarded

    /// Readiness asks every second: an idle node finds the primary gone here (and spools its
    /// next commit at once) rather than at its next commit.
    public func ping() async throws {
        guard status.mode == .direct else { return }
        switch await attempt({ try await self.primary.ping() }, timeout: switchTimeout) {
        case .committed: return
        case .refused(let error): throw error
        case .unreachable(let why): if status.mode == .direct { enterSpooling(because: why, atStart: false) }
        }
    }

    public func collectGarbage() async throws -> Int {
        guard status.mode == .direct else { return 0 }
        return try await primary.collectGarbage()
    }

    public func enforceRetention(before cutoff: Int64?, now: Int64) async throws -> Int {
        guard status.mode == .direct else { return 0 }
        return try await primary.enforceRetention(before: cutoff, now: now)
    }

    public func loadUsers() async throws -> [StoredUser] { try await primary.loadUsers() }
    public func saveUser(_ user: StoredUser) async throws { try await primary.saveUser(user) }
    public func deleteUser(_ username: String) async throws -> Bool { try await primary.deleteUser(username) }
    public func replayedThrough(spool: String) async throws -> Int64 { try await primary.replayedThrough(spool: spool) }
    public nonisolated func isUnreachable(_ error: any Error) -> Bool { primary.isUnreachable(error) }
}

/// The time limit of one call to the primary, cancelled when the call ends first.
private final class TimerBox: Sendable {
    let task = Mutex<Task<Void, any Error>?>(nil)
}

/// The outcome of a call to the primary, awaited after its time limit has passed.
final class PrimaryCall: Sendable {
    enum Outcome: Sendable {
        case ended(FallbackStore.Attempt)
        /// Still running, or ended by its cancellation.
        case unknown
    }

    private let state = Mutex<(outcome: Outcome?, waiters: [Int: CheckedContinuation<Outcome, Never>], next: Int)>((nil, [:], 0))

    func finish(_ outcome: Outcome) {
        let waiters = state.withLock { state in
            defer { state.waiters.removeAll() }
            state.outcome = outcome
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    /// The call's outcome, or `.unknown` when it has none within `timeout`.
    func outcome(within timeout: Duration) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let id = state.withLock { state -> Int? in
                if state.outcome != nil { return nil }
                state.next += 1
                state.waiters[state.next] = continuation
                return state.next
            }
            guard let id else {
                continuation.resume(returning: state.withLock { $0.outcome } ?? .unknown)
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: .unknown)
            }
        }
    }
}

/// The first of two answers wins (a call, or its time limit).
private final class Race: Sendable {
    let state = Mutex<(continuation: CheckedContinuation<FallbackStore.Attempt, Never>?, done: Bool)>((nil, false))

    func arm(_ continuation: CheckedContinuation<FallbackStore.Attempt, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    /// True when this answer was the first.
    @discardableResult
    func finish(_ outcome: FallbackStore.Attempt) -> Bool {
        let continuation = state.withLock { state -> CheckedContinuation<FallbackStore.Attempt, Never>? in
            guard !state.done else { return nil }
            state.done = true
            return state.continuation
        }
        continuation?.resume(returning: outcome)
        return continuation != nil
    }
}
