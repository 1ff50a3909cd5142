import Logging
import MQTTCodec
import NIOCore
import StarlingCore
import Synchronization

/// The broker as the cluster sees it (`ClusterInbound`), recording each call in order.
final class RecordingInbound: ClusterInbound {
    let calls = Mutex<[String]>([])
    let willTokens = Mutex<[Int64]>([])
    /// Every call as it happens, to await one.
    let events: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation

    init() { (events, continuation) = AsyncStream.makeStream() }

    func record(_ call: String) {
        calls.withLock { $0.append(call) }
        continuation.yield(call)
    }
    var recorded: [String] { calls.withLock { $0 } }

    var localRoutes: [String] { [] }
    var localDirectory: [SessionDirectoryEntry] { [] }
    func directoryChanged(_ entries: [SessionDirectoryEntry]) { record("directoryChanged \(entries.map(\.clientID))") }
    func directoryReplaced(owner: String, entries: [SessionDirectoryEntry]) { record("directoryReplaced \(owner)") }
    func releasedSessionsExpired(_ clientIDs: [String]) { record("expired \(clientIDs)") }
    func receivedFromPeer(_ message: Message, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery], then: (() -> Void)?) {
        record("received \(message.topic)")
        then?()
    }
    func retainedFromPeer(_ message: Message) { record("retained \(message.topic)") }
    func replaceRetained(_ messages: [StoredMessage]) { record("replaceRetained \(messages.count)") }
    func peerReadComplete() {}
    func peersCaughtUp() {}
    /// Set: a peer's claim is acknowledged only when the test runs `heldAcknowledgements`
    /// (the broker letting the session go takes a commit).
    /// Set and read on the test's loop only.
    nonisolated(unsafe) var holdsClaims = false
    nonisolated(unsafe) var heldAcknowledgements: [() -> Void] = []
    /// What `endedDeliveries` answers.
    nonisolated(unsafe) var ended: [Int64] = []

    func sessionClaimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void) {
        record("claimedElsewhere \(clientID) by \(node) at \(epoch)")
        if holdsClaims { heldAcknowledgements.append(acknowledge) } else { acknowledge() }
    }
    func endedDeliveries(of clientID: String) -> [Int64] { ended }
    func beginPickup(_ read: @escaping ([String]) -> Void) { read([]) }
    func finishPickup(messages: [StoredMessage], deliveries: [StoredDelivery]) {}
    func cutOffFromTheStore() { record("cutOff") }
    func reachesTheStoreAgain() -> [Int64] {
        record("servingAgain")
        return willTokens.withLock { tokens in
            defer { tokens = [] }; return tokens
        }
    }
    func publishWillsTaken(_ wills: [(clientID: String, will: MQTTWill)]) { record("wills \(wills.map(\.clientID))") }
    func redispatchShared(_ taken: [(message: StoredMessage, group: ShareGroupKey)]) {
        record("redispatch \(taken.map { "\($0.message.topic)@\($0.group.name)" })")
    }
}

/// The store's side of session ownership in memory: what each call returns is set up front;
/// every call is recorded in order.
final class FakeOwnership: SessionOwnershipStore {
    struct Setup {
        var epoch: Int64 = 7
        var previousOwner: String?
        var replayingAnswers: [Bool] = []
        var state = StoredState()
        var released: [StoredSession] = []
        var shared: [(message: StoredMessage, group: ShareGroupKey)] = []
        var dueWills: [(clientID: String, will: MQTTWill)] = []
        var connectionWills: [Int64: (clientID: String, will: MQTTWill)] = [:]
        var expired: [String] = []
        /// By the wall-clock time the sweep passes: sessions whose node's lease ends then, wills
        /// due then, sessions that expire then (each handed out once).
        var leaseEnds: [(at: Int64, session: StoredSession)] = []
        var willsDue: [(at: Int64, clientID: String, will: MQTTWill)] = []
        var expiries: [(at: Int64, clientID: String)] = []
    }
    let setup: Mutex<Setup>
    let calls = Mutex<[String]>([])

    init(_ setup: Setup = Setup()) { self.setup = Mutex(setup) }

    var recorded: [String] { calls.withLock { $0 } }
    private func record(_ call: String) { calls.withLock { $0.append(call) } }

    func markOwned(_ clientID: String) async throws -> Int64 { try await claimOwnership(clientID).epoch }
    func claimOwnership(_ clientID: String) async throws -> (epoch: Int64, previousOwner: String?) {
        record("claimOwnership \(clientID)")
        return setup.withLock { ($0.epoch, $0.previousOwner) }
    }
    func isReplaying(node: String) async throws -> Bool {
        record("isReplaying \(node)")
        return setup.withLock { $0.replayingAnswers.isEmpty ? true : $0.replayingAnswers.removeFirst() }
    }
    func claimOwnership(of clientIDs: [String]) async throws -> [String: (epoch: Int64, previousOwner: String?)] {
        record("claimOwnership \(clientIDs.joined(separator: " "))")
        return setup.withLock { s in Dictionary(uniqueKeysWithValues: clientIDs.map { ($0, (s.epoch, s.previousOwner)) }) }
    }
    /// Reads of these clients' sessions wait until `releaseReads` (a subscriber's backlog).
    let slowReads = Mutex<(clients: Set<String>, waiting: [CheckedContinuation<Void, Never>])>(([], []))

    func releaseReads() {
        let waiting = slowReads.withLock { slow in
            defer { slow = ([], []) }
            return slow.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    func claimSessions(_ clientIDs: [String]) async throws -> [String: StoredState] {
        record("claimSession \(clientIDs.joined(separator: " "))")
        if slowReads.withLock({ !$0.clients.isDisjoint(with: clientIDs) }) {
            await withCheckedContinuation { continuation in
                let now = slowReads.withLock { slow in
                    guard !slow.clients.isEmpty else { return true }
                    slow.waiting.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
        return setup.withLock { s in Dictionary(uniqueKeysWithValues: clientIDs.map { ($0, s.state) }) }
    }
    func deliveries(of clientIDs: [String]) async throws -> (messages: [StoredMessage], deliveries: [StoredDelivery]) { ([], []) }
    func loadDirectory() async throws -> [SessionDirectoryEntry] { [] }
    func loadRetained() async throws -> [StoredMessage] { [] }
    func releaseDeadNodesSessions(now: Int64) async throws -> [StoredSession] {
        record("release")
        return setup.withLock { s in
            defer { s.released = [] }
            return s.released + s.leaseEnds.take { $0.at <= now }.map(\.session)
        }
    }
    func takeDueWills(now: Int64) async throws -> [(clientID: String, will: MQTTWill)] {
        setup.withLock { s in
            defer { s.dueWills = [] }
            return s.dueWills + s.willsDue.take { $0.at <= now }.map { ($0.clientID, $0.will) }
        }
    }
    func deleteExpiredSessions(now: Int64) async throws -> [String] {
        setup.withLock { s in
            defer { s.expired = [] }
            return s.expired + s.expiries.take { $0.at <= now }.map(\.clientID)
        }
    }
    func takeSharedDeliveries(of clientIDs: [String]) async throws -> [(message: StoredMessage, group: ShareGroupKey)] {
        record("takeShared \(clientIDs)")
        return setup.withLock { s in
            defer { s.shared = [] }; return s.shared
        }
    }
    func takeConnectionWills(firstToken: Int64) async throws -> [(clientID: String, will: MQTTWill)] { [] }
    func takeConnectionWills(tokens: [Int64]) async throws -> [(clientID: String, will: MQTTWill)] {
        record("takeConnectionWills \(tokens)")
        return setup.withLock { s in tokens.compactMap { s.connectionWills.removeValue(forKey: $0) } }
    }
}

extension Array {
    /// Removes and returns the elements that `due` picks, in order.
    mutating func take(_ due: (Element) -> Bool) -> [Element] {
        defer { removeAll(where: due) }
        return filter(due)
    }
}
