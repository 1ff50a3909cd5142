public import StarlingCore
import Synchronization

/// A store that keeps what it commits in memory and lets a test decide when a commit ends:
/// hold commits (`holdCommits`) and release them one by one, or refuse them (`refuseCommits`).
/// For G1 tests of the broker without sockets or a database: an acknowledgement must follow the
/// commit of everything the message caused.
public final class InMemoryStore: PersistentStore {
    public let name = "memory"

    public struct Refused: Error, CustomStringConvertible {
        public var description: String { "the in-memory store refuses commits (test)" }
    }

    private struct State {
        var committed: [StoreOperation] = []
        var hold = false
        var refuse = false
        var unreachable = false
        var held: [CheckedContinuation<Void, Never>] = []
        var claimEpochs: [String: Int64] = [:]
        /// Unreleased QoS 2 entries (`inbound_qos2`), as committed.
        var inbound: Set<StoreBatch.InboundKey> = []

        mutating func apply(_ operations: [StoreOperation]) {
            committed += operations
            for operation in operations {
                switch operation {
                case .addInboundQoS2(let clientID, let packetID):
                    inbound.insert(StoreBatch.InboundKey(clientID: clientID, packetID: packetID))
                case .removeInboundQoS2(let clientID, let packetID):
                    inbound.remove(StoreBatch.InboundKey(clientID: clientID, packetID: packetID))
                case .deleteSession(let clientID): inbound = inbound.filter { $0.clientID != clientID }
                default: break
                }
            }
        }
    }

    private let state = Mutex(State())
    /// One element per commit attempt, as it starts: the number of operations of its batch.
    public let attempts: AsyncStream<Int>
    private let attemptsContinuation: AsyncStream<Int>.Continuation

    public init() {
        (attempts, attemptsContinuation) = AsyncStream.makeStream()
    }

    /// Commits wait in `apply` until `releaseCommits()`.
    public var holdCommits: Bool {
        get { state.withLock { $0.hold } }
        set { state.withLock { $0.hold = newValue } }
    }

    /// The store cannot be reached: commits, pings, migrations and loads fail with
    /// `Unreachable`, which `isUnreachable` recognises (a `FallbackStore` spools then).
    public var unreachable: Bool {
        get { state.withLock { $0.unreachable } }
        set { state.withLock { $0.unreachable = newValue } }
    }

    public struct Unreachable: Error, CustomStringConvertible {
        public init() {}
        public var description: String { "the in-memory store cannot be reached (test)" }
    }

    public func isUnreachable(_ error: any Error) -> Bool { error is Unreachable }

    public func replayedThrough(spool: String) async throws -> Int64 {
        if unreachable { throw Unreachable() }
        return committed.reduce(0) { last, operation in
            if case .markReplayed(spool, let through) = operation { return max(last, through) }
            return last
        }
    }

    /// Commits fail with `Refused` (the writer retries them).
    public var refuseCommits: Bool {
        get { state.withLock { $0.refuse } }
        set { state.withLock { $0.refuse = newValue } }
    }

    /// Every operation committed so far, in order.
    public var committed: [StoreOperation] { state.withLock { $0.committed } }

    /// Lets the held commits go on (and, with `holdCommits` false, every later one).
    public func releaseCommits() {
        let held = state.withLock { state in
            defer { state.held.removeAll() }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }

    /// The epoch of the latest claim of a session, as the shared store's row holds it: fenced
    /// commits of earlier claims are left out (`commit`).
    public func setClaimEpoch(_ epoch: Int64, of clientID: String) {
        state.withLock { $0.claimEpochs[clientID] = epoch }
    }

    /// An unreleased QoS 2 entry committed by another node (the client's message, re-sent there
    /// and stored): live fenced commits that add it again are left out (`commit`).
    public func addInboundEntry(_ packetID: UInt16, of clientID: String) {
        state.withLock { $0.apply([.addInboundQoS2(clientID: clientID, packetID: packetID)]) }
    }

    public func apply(_ operations: [StoreOperation]) async throws {
        _ = try await commit(operations)
    }

    public func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        if holdCommits {
            await withCheckedContinuation { continuation in
                let holding = state.withLock { state in
                    guard state.hold else { return false }
                    state.held.append(continuation)
                    return true
                }
                // Told once held: a test that releases the commits when it sees this attempt
                // releases this one (told before, the release could come first and miss it).
                attemptsContinuation.yield(operations.count)
                if !holding { continuation.resume() }
            }
        } else {
            attemptsContinuation.yield(operations.count)
        }
        return try state.withLock { state in
            if state.unreachable { throw Unreachable() }
            if state.refuse { throw Refused() }
            let epochs = state.claimEpochs
            var stale = StoreOperation.fences(in: operations).filter { (epochs[$0.clientID] ?? 0) > $0.epoch }
            stale.formUnion(StoreOperation.repeatedQoS2(StoreOperation.newInboundQoS2(in: operations), held: state.inbound))
            state.apply(StoreOperation.unfenced(operations, dropping: stale))
            return stale
        }
    }

    public func migrate() async throws {
        if unreachable { throw Unreachable() }
    }

    public func load() async throws -> StoredState {
        if unreachable { throw Unreachable() }
        return StoredState()
    }

    public func collectGarbage() async throws -> Int { 0 }
    public func enforceRetention(before _: Int64?, now _: Int64) async throws -> Int { 0 }
    public func loadUsers() async throws -> [StoredUser] { [] }
    public func saveUser(_: StoredUser) async throws {}
    public func deleteUser(_: String) async throws -> Bool { false }
    public func ping() async throws {
        if unreachable { throw Unreachable() }
        if refuseCommits { throw Refused() }
    }
}
