import MQTTCodec
public import StarlingCore

/// A `ClusterBus` that records what the broker asks of the cluster, with peers' routes set by
/// the test; announcements complete when the test says so (`completeAnnouncements`), so tests
/// can check what waits for the peers.
public final class RecordingClusterBus: ClusterBus {
    public struct Forward {
        public var message: Message
        public var peer: String
        public var plain: Bool
        public var groups: [ShareGroupKey]
        public var deliveries: [RemoteDelivery]
    }

    public private(set) var routeChanges: [(added: [String], removed: [String])] = []
    public private(set) var directoryChanges: [[SessionDirectoryEntry]] = []
    public private(set) var forwards: [Forward] = []
    public private(set) var retainedChanges: [Message] = []
    public private(set) var claims: [String] = []
    /// Announcements waiting for the peers.
    private var waiting: [() -> Void] = []
    /// Complete announcements at once (true) or when `completeAnnouncements` is called.
    public var peersAnswerAtOnce = true
    /// Peers' plain routes and shared-group members by topic, as the test sets them.
    public var peerRoutes: (String) -> (plain: Set<String>, groups: [ShareGroupKey: [String]]) = { _ in ([], [:]) }
    /// What a claim finds in the store.
    public var claimedState = StoredState()

    public init() {}

    public func routesChanged(added: [String], removed: [String], then: @escaping () -> Void) {
        routeChanges.append((added.sorted(), removed.sorted()))
        announce(then)
    }

    public func sessionsChanged(_ entries: [SessionDirectoryEntry], then: @escaping () -> Void) {
        directoryChanges.append(entries)
        announce(then)
    }

    private func announce(_ then: @escaping () -> Void) {
        if peersAnswerAtOnce { then() } else { waiting.append(then) }
    }

    /// The peers acknowledge every announcement so far.
    public func completeAnnouncements() {
        let pending = waiting
        waiting.removeAll()
        for then in pending { then() }
    }

    public func peers(matching topic: String) -> (plain: Set<String>, groups: [ShareGroupKey: [String]]) { peerRoutes(topic) }

    public func forward(
        _ message: Message, to peer: String, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        committed: (() -> Void)?
    ) -> Bool {
        forwards.append(Forward(message: message, peer: peer, plain: plain, groups: groups, deliveries: deliveries))
        if let committed { peerCommits.append(committed) }
        return !congested
    }

    /// Forwards whose peers have not yet said they committed (`forward(…committed:)`).
    public private(set) var peerCommits: [() -> Void] = []

    /// The peers say they committed what they were forwarded.
    public func completePeerCommits() {
        let commits = peerCommits
        peerCommits.removeAll()
        for commit in commits { commit() }
    }

    /// Links are full: `forward` says so.
    public var congested = false

    public func retainedChanged(_ message: Message, then: @escaping () -> Void) {
        retainedChanges.append(message)
        announce(then)
    }

    public var statistics = ClusterStatistics()

    public func claimSession(_ clientID: String, subscribed: Bool, completion: @escaping (SessionClaim?) -> Void) {
        claims.append(clientID)
        if !subscribed { unsubscribedClaims.append(clientID) }
        if claimsAnswerAtOnce {
            completion(SessionClaim(state: claimedState, epoch: claimEpoch, ended: claimedEnded))
        } else {
            pendingClaims.append(completion)
        }
    }

    /// The claims made for sessions the directory lists without subscriptions.
    public var unsubscribedClaims: [String] = []

    /// The epoch the store gives claims.
    public var claimEpoch: Int64 = 1
    /// The deliveries the previous holder says it ended (its answer to claims).
    public var claimedEnded: Set<Int64> = []

    /// Answer claims at once (true) or when `completeClaims` is called.
    public var claimsAnswerAtOnce = true
    private var pendingClaims: [(SessionClaim?) -> Void] = []

    /// The store's answers to the claims made so far: `claimedState`.
    public func completeClaims() {
        let pending = pendingClaims
        pendingClaims.removeAll()
        for completion in pending { completion(SessionClaim(state: claimedState, epoch: claimEpoch, ended: claimedEnded)) }
    }
}
