public import MQTTCodec

/// The cluster port's other direction (docs/architecture.md, "Cluster"): what the cluster
/// (StarlingCluster) tells the broker core, as `ClusterBus` is what the core asks of the
/// cluster. The broker implements it; the cluster holds it weakly and calls it on the broker's
/// event loop only. Nothing of the broker's state is set from outside: every change goes
/// through a call that the broker decides on.
public protocol ClusterInbound: AnyObject, Sendable {
    // Routes and the session directory.

    /// The filters this node has subscribers for (raw, `$share/group/filter` included): sent
    /// in full to a peer whose link comes up.
    var localRoutes: [String] { get }
    /// The stored sessions this node holds, with their subscriptions and claim epochs.
    var localDirectory: [SessionDirectoryEntry] { get }
    /// A peer's sessions began, changed, moved or ended.
    func directoryChanged(_ entries: [SessionDirectoryEntry])
    /// A peer's whole directory (its link came up): what it no longer lists is gone.
    func directoryReplaced(owner: String, entries: [SessionDirectoryEntry])
    /// Sessions no node held expired (the sweeper deleted them).
    func releasedSessionsExpired(_ clientIDs: [String])

    // Messages.

    /// A message a peer forwarded (`ClusterBus.forward`); `then` runs once what it caused here
    /// is committed.
    func receivedFromPeer(
        _ message: Message, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        then: (() -> Void)?)
    /// A retained message a peer set or cleared.
    func retainedFromPeer(_ message: Message)
    /// Every retained message, as the store has them (after a link came up).
    func replaceRetained(_ messages: [StoredMessage])
    /// One read from a link is handled: what it caused is flushed to the clients.
    func peerReadComplete()
    /// The node links that were full can take more.
    func peersCaughtUp()

    // Sessions across nodes.

    /// Another node claimed `clientID` with `epoch`: this node lets it go (or refuses a claim
    /// of its own that lost); `acknowledge` runs once that is committed.
    func sessionClaimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void)
    /// The deliveries of `clientID` that ended here lately: a claim's answer.
    func endedDeliveries(of clientID: String) -> [Int64]
    /// A pickup of rows peers committed whose copies never came: `read` gets the client ids.
    func beginPickup(_ read: @escaping ([String]) -> Void)
    /// What the pickup read.
    func finishPickup(messages: [StoredMessage], deliveries: [StoredDelivery])

    // The partition verdict and the sweeper.

    /// This node is the one cut from the store while peers reach it: it is not ready and lets
    /// every session go.
    func cutOffFromTheStore()
    /// This node holds its lease again: it serves. Returns the will tokens of the connections
    /// let go while cut off, whose wills are published if no survivor took them.
    func reachesTheStoreAgain() -> [Int64]
    /// Wills taken from the store once in the cluster: published here.
    func publishWillsTaken(_ wills: [(clientID: String, will: MQTTWill)])
    /// QoS 1 messages of shared subscriptions of dead nodes' sessions, for other members.
    func redispatchShared(_ taken: [(message: StoredMessage, group: ShareGroupKey)])
}
