/// The cluster as the broker core sees it (DESIGN.md section 5): a port, like storage. The core
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
    /// Sends a message to `peer`, which delivers it to its own plain subscribers and to the
    /// shared groups in `groups` (one member each). What cannot be sent (no link) is counted.
    func forward(_ message: Message, to peer: String, groups: [ShareGroupKey])
    /// A retained message was set (or deleted: empty payload) on this node.
    func retainedChanged(_ message: Message)
    /// Takes `clientID`'s session over in the shared store (it may be held by another node, or
    /// by none) and returns what the store holds of it: the session row, subscriptions, queued
    /// and in-flight messages, inbound QoS 2 entries. The node that held it is told to let it go
    /// (its connection gets DISCONNECT 0x8E). `completion` runs on the broker's loop; nil when
    /// the store cannot be reached.
    func claimSession(_ clientID: String, completion: @escaping (StoredState?) -> Void)
}
