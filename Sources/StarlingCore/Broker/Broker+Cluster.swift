public import MQTTCodec
import NIOCore

/// The broker's side of the cluster (docs/architecture.md, "Cluster"): which filters this node has
/// subscribers for (its routes), forwarding what local clients publish to peers with
/// subscribers, and delivering what peers forward. Sessions and their subscriptions stay with
/// the node their client is connected to.
extension Broker: ClusterInbound {
    /// The first id of a block (below it: the ids of every earlier node start).
    public static func firstID(inBlock block: Int64) -> Int64 { 1 << 62 | block << 40 }

    /// In a cluster, the ids this node generates (message ids) come from its own block: bit 62
    /// set (above every id a node running alone makes from the wall clock), the block in the
    /// next 21 bits, then a 40-bit counter — so no two node starts ever generate the same id.
    public func generateIDs(inBlock block: Int64) {
        precondition(block > 0 && block < 1 << 21, "id block \(block) out of range")
        writes.lastID = Self.firstID(inBlock: block)
    }

    /// The filters this node has subscribers for (sent in full when a link to a peer comes up).
    public var localRoutes: [String] { peers.routes.all }

    /// A message a peer forwarded (`PeerRouting.receivedFromPeer`).
    public func receivedFromPeer(
        _ message: Message, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        then: (() -> Void)? = nil
    ) {
        peers.receivedFromPeer(message, plain: plain, groups: groups, deliveries: deliveries, then: then)
    }

    public func peersCaughtUp() { peers.peersCaughtUp() }

    public func directoryChanged(_ entries: [SessionDirectoryEntry]) { peers.directoryChanged(entries) }

    public func directoryReplaced(owner: String, entries: [SessionDirectoryEntry]) {
        peers.directoryReplaced(owner: owner, entries: entries)
    }

    public var localDirectory: [SessionDirectoryEntry] { peers.localDirectory }

    public func beginPickup(_ read: @escaping ([String]) -> Void) { peers.beginPickup(read) }

    public func finishPickup(messages: [StoredMessage], deliveries: [StoredDelivery]) {
        peers.finishPickup(messages: messages, deliveries: deliveries)
    }

    var nodeName: String { configuration.ingest.nodeID }

    /// A delivery of `session` ended (acknowledged, dropped, expired): its row is deleted.
    func forgetDelivery(_ sequence: Int64, of session: Session) {
        writes.append(.deleteDelivery(clientID: session.clientID, sequence: sequence))
        session.ended.insert(sequence)
        if peers.pickupsInFlight > 0 { session.endedDuringPickup.insert(sequence) }
    }

    /// The end of a read from a node link: what the peer's messages caused is sent.
    public func peerReadComplete() {
        flush()
    }

    // MARK: Sessions across nodes (`Takeover`)

    public func sessionClaimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void) {
        takeover.claimedElsewhere(clientID, by: node, epoch: epoch, acknowledge: acknowledge)
    }

    public func cutOffFromTheStore() {
        takeover.cutOffFromTheStore()
        cutOffObserver?(true)
    }

    public func reachesTheStoreAgain() -> [Int64] {
        defer { cutOffObserver?(false) }
        return takeover.reachesTheStoreAgain()
    }

    /// Runs `body` on the broker's loop with each partition verdict: true when this node is cut
    /// off from the store while its peers are not (it serves nobody then), false once it reaches
    /// the store again. The server closes its MQTT listeners meanwhile, so a balancer's next
    /// connection attempt is refused at once and goes to another node (README "Deployment").
    public func observeCutOff(_ body: @escaping (Bool) -> Void) {
        cutOffObserver = body
    }

    public func endedDeliveries(of clientID: String) -> [Int64] { takeover.endedDeliveries(of: clientID) }

    /// Wills taken from the store (`SessionLifecycle.publishWillsTaken`).
    public func publishWillsTaken(_ wills: [(clientID: String, will: MQTTWill)]) { lifecycle.publishWillsTaken(wills) }

    /// Dead nodes' shared QoS 1 messages, to other members (`Publishing.redispatchShared`).
    public func redispatchShared(_ taken: [(message: StoredMessage, group: ShareGroupKey)]) { publishing.redispatchShared(taken) }

    /// Sessions no node held expired and were deleted: every node's directory forgets them.
    public func releasedSessionsExpired(_ clientIDs: [String]) {
        guard !clientIDs.isEmpty else { return }
        let ended = clientIDs.map { SessionDirectoryEntry(clientID: $0, owner: nil, subscriptions: nil) }
        directoryChanged(ended)
        cluster?.sessionsChanged(ended) {}
    }

    /// A retained message set or deleted on a peer: this node serves it to new subscribers.
    public func retainedFromPeer(_ message: Message) {
        retained.set(message)
    }

    /// Every retained message, as read again from the shared store (after a link to a peer
    /// came back: what it set meanwhile is in the store).
    public func replaceRetained(_ messages: [StoredMessage]) {
        retained = RetainedStore()
        for stored in messages { retained.set(rows.message(stored)) }
    }
}
