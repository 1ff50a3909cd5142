public import MQTTCodec

/// The cluster as the broker core sees it (docs/architecture.md, "Cluster"): a port, like storage. The core
/// says which filters this node has subscribers for and hands over messages for peers; the
/// implementation (StarlingCluster) carries them over the node links. Called on the broker's
/// event loop only.
public protocol ClusterBus: AnyObject {
    /// This node got its first subscriber for the `added` filters and lost its last one for
    /// the `removed` filters (raw filters, `$share/group/filter` included). `then` runs on the
    /// broker's loop once every peer with a live link has applied the change (or did not answer
    /// in time), so a SUBACK means the whole cluster routes to the new subscription.
    func routesChanged(added: [String], removed: [String], then: @escaping () -> Void)
    /// The peers with a plain subscription matching `topic`, and for each shared group with
    /// members on peers, those peers.
    func peers(matching topic: String) -> (plain: Set<String>, groups: [ShareGroupKey: [String]])
    /// Sends a message to `peer`: with `plain`, it delivers it to its own subscribers that are
    /// not stored sessions and to the shared groups in `groups` (one member each); `deliveries`
    /// are copies for its stored sessions, whose rows this node has committed. What cannot be
    /// sent (no link, or a peer that has been too slow for too long) is counted.
    /// With `committed`, the peer acknowledges once what the message caused there is committed
    /// (the queue rows of its stored members of `groups`), and `committed` runs then — or when
    /// the link is lost or the peer does not answer in time (G1 for shared groups across nodes:
    /// the publisher's acknowledgement waits for it).
    /// - Returns: false when the link to the peer is full: the broker then stops reading from
    ///   the publisher until `Broker.peersCaughtUp()`, so a slower peer slows publishers down
    ///   for a moment instead of losing their messages.
    @discardableResult
    func forward(
        _ message: Message, to peer: String, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        committed: (() -> Void)?
    ) -> Bool
    /// Stored sessions of this node whose subscriptions changed, began or ended, for every
    /// peer's session directory; `then` runs once every peer with a live link has them.
    func sessionsChanged(_ entries: [SessionDirectoryEntry], then: @escaping () -> Void)
    /// A retained message was set (or deleted: empty payload) on this node; `then` runs once
    /// every linked peer has applied it.
    func retainedChanged(_ message: Message, then: @escaping () -> Void)
    /// Figures for `$SYS/broker/cluster/...` and `/metrics`.
    var statistics: ClusterStatistics { get }
    /// Takes `clientID`'s session over in the shared store (it may be held by another node, or
    /// by none) and returns what the store holds of it: the session row, subscriptions, queued
    /// and in-flight messages, inbound QoS 2 entries. The node that held it is told to let it go
    /// (its connection gets DISCONNECT 0x8E). `subscribed` is false when the session directory
    /// lists the session without subscriptions (a device that only publishes): no delivery of it
    /// can have ended in the previous holder's spool, so that holder's replay is not waited for.
    /// `completion` runs on the broker's loop; nil when the store cannot be reached.
    func claimSession(_ clientID: String, subscribed: Bool, completion: @escaping (SessionClaim?) -> Void)
}

extension ClusterBus {
    @discardableResult
    public func forward(_ message: Message, to peer: String, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery]) -> Bool {
        forward(message, to: peer, plain: plain, groups: groups, deliveries: deliveries, committed: nil)
    }
}

/// A claim of a session in the shared store: what the store held of it, and the claim's epoch
/// (from a sequence of the store: of two claims of one session, the later epoch owns it).
public struct SessionClaim: Sendable {
    public var state: StoredState
    public var epoch: Int64
    /// Deliveries the node that held the session ended lately (`Broker.endedDeliveries`): their
    /// rows may still be in the store (that node's deletes in its spool, not yet replayed), and
    /// are not delivered again (QoS 2 exactly once across a takeover).
    public var ended: Set<Int64>

    public init(state: StoredState, epoch: Int64, ended: Set<Int64> = []) {
        (self.state, self.epoch, self.ended) = (state, epoch, ended)
    }
}

/// One stored session in the cluster's session directory: which node holds it and what it is
/// subscribed to. Every node keeps the directory of the other nodes' stored sessions, so the
/// node that receives a PUBLISH writes the queue rows of every matching stored session itself
/// before it acknowledges (G1 across nodes), whichever node holds the session, or none.
public struct SessionDirectoryEntry: Sendable {
    public var clientID: String
    /// The node holding it; nil: none (its client is away and its node is gone).
    public var owner: String?
    /// Its subscriptions; nil: the session ended.
    public var subscriptions: [Subscription]?
    /// The epoch of the owner's claim (0: unknown): a node holding the session by an earlier
    /// claim learns here that it lost it, should the claim itself not have reached it.
    public var epoch: Int64

    public init(clientID: String, owner: String?, subscriptions: [Subscription]?, epoch: Int64 = 0) {
        (self.clientID, self.owner, self.subscriptions, self.epoch) = (clientID, owner, subscriptions, epoch)
    }
}

/// A copy of a forwarded message for one stored session of the receiving node, whose row (when
/// QoS 1/2) the sending node committed.
public struct RemoteDelivery: Sendable, Equatable {
    public var clientID: String
    /// The delivery's row (QoS 1/2); nil for QoS 0.
    public var sequence: Int64?
    /// The stored payload the row references.
    public var messageID: Int64?
    public var qos: MQTTQoS
    public var retain: Bool
    public var subscriptionIdentifiers: [Int]

    public init(clientID: String, sequence: Int64?, messageID: Int64?, qos: MQTTQoS, retain: Bool, subscriptionIdentifiers: [Int]) {
        (self.clientID, self.sequence, self.messageID, self.qos, self.retain) = (clientID, sequence, messageID, qos, retain)
        self.subscriptionIdentifiers = subscriptionIdentifiers
    }
}

/// What the cluster reports about itself.
public struct ClusterStatistics: Sendable, Equatable {
    /// Live nodes in the membership table, this one included.
    public var nodes = 1
    /// Peers with an outbound link up.
    public var linksUp = 0
    /// Messages sent to peers, and those that could not be (no link, or a slow one).
    public var forwarded: UInt64 = 0
    public var forwardDrops: UInt64 = 0

    public init() {}
}
