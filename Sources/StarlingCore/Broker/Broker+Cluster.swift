public import MQTTCodec
import NIOCore

/// The broker's side of the cluster (docs/architecture.md, "Cluster"): which filters this node has
/// subscribers for (its routes), forwarding what local clients publish to peers with
/// subscribers, and delivering what peers forward. Sessions and their subscriptions stay with
/// the node their client is connected to.
extension Broker: ClusterInbound {
    /// A local subscription to `filter` was added: the first one makes a route.
    func routeAdded(_ filter: MQTTTopicFilter) { routes.add(filter.raw, announcing: cluster != nil) }

    /// A local subscription to `filter` went: the last one removes the route.
    func routeRemoved(_ filter: MQTTTopicFilter) { routes.remove(filter.raw, announcing: cluster != nil) }

    /// Announces the route changes of this event to the peers; `then` runs once they have them
    /// (at once without a cluster or without changes).
    func announceRoutes(then: @escaping () -> Void) {
        guard let cluster else { return then() }
        let entries = takeDirectoryChanges()
        let (added, removed) = routes.takeChanges()
        // Both announcements are acknowledged; `then` once both are.
        var waiting = 2
        let done = {
            waiting -= 1; if waiting == 0 { then() }
        }
        if added.isEmpty && removed.isEmpty { done() } else { cluster.routesChanged(added: added, removed: removed, then: done) }
        if entries.isEmpty { done() } else { cluster.sessionsChanged(entries, then: done) }
    }

    /// The first id of a block (below it: the ids of every earlier node start).
    public static func firstID(inBlock block: Int64) -> Int64 { 1 << 62 | block << 40 }

    /// In a cluster, the ids this node generates (message ids) come from its own block: bit 62
    /// set (above every id a node running alone makes from the wall clock), the block in the
    /// next 21 bits, then a 40-bit counter — so no two node starts ever generate the same id.
    public func generateIDs(inBlock block: Int64) {
        precondition(block > 0 && block < 1 << 21, "id block \(block) out of range")
        nextMessageID = Self.firstID(inBlock: block)
    }

    /// The filters this node has subscribers for (sent in full when a link to a peer comes up).
    public var localRoutes: [String] { routes.all }

    /// Where the shared groups matching `message` that have members on peers get it, one node
    /// per group in the whole cluster [MQTT-4.8.2]: chosen by `mqtt.shared_subscription_strategy`
    /// among the nodes with members, this one included (`local`: this one when it has members).
    /// Groups only this node has members of are left to `route`.
    func placeShared(_ message: Message) -> SharedPlacement {
        guard let cluster else { return SharedPlacement() }
        let matching = cluster.peers(matching: message.topic)
        var placement = SharedPlacement(matching: matching)
        guard !matching.groups.isEmpty else { return placement }
        let here = Set(index.matches(message.topic).groups.map(\.group))
        for (group, peers) in matching.groups where !peers.isEmpty {
            var nodes = peers
            if here.contains(group) {
                if configuration.sharedStrategy == .local { continue }
                nodes.append(nodeName)
            }
            guard let chosen = shared.node(for: group, from: nodes.sorted(), message: message), chosen != nodeName
            else { continue }
            placement.peers[chosen, default: []].append(group)
            placement.elsewhere.insert(group)
        }
        return placement
    }

    /// Sends a message published by a local client to the peers with subscribers for it: every
    /// peer with a plain subscription, each peer `placed` chose for shared groups, and for each
    /// other shared group that got no local member, one peer with members (so each group gets
    /// one copy in the whole cluster). With `copiesOnly`, only the copies for stored sessions go
    /// (the plain message went before).
    /// - Returns: the number of peers it went to (and of copies for sessions no node holds).
    /// With `groupsCommitted`, a QoS 1/2 message handed to a peer for its shared groups is
    /// acknowledged by that peer once committed there (its stored members' rows), and
    /// `groupsCommitted` counts it (G1 for shared groups across nodes).
    @discardableResult
    func forwardToPeers(
        _ message: Message, servedGroups: Set<ShareGroupKey>, placed: SharedPlacement = SharedPlacement(),
        deliveries: [String: [RemoteDelivery]] = [:], copiesOnly: Bool = false, from publisher: Connection? = nil,
        groupsCommitted: PeerCommits? = nil
    ) -> Int {
        guard let cluster else { return 0 }
        let (plain, groups) = copiesOnly ? ([], [:]) : placed.matching ?? cluster.peers(matching: message.topic)
        var assignments = copiesOnly ? [:] : placed.peers
        for (group, peers) in groups where !servedGroups.contains(group) && !placed.elsewhere.contains(group) && !peers.isEmpty {
            // A group placed here that no member here could take (authorization): a peer's.
            let peer = peers.sorted()[Int(stableHash(message.publisher + message.topic) % UInt64(peers.count))]
            assignments[peer, default: []].append(group)
        }
        if let own = deliveries[nodeName] { deliverFromPeer(message, own) }  // sessions being taken over here
        let peers = plain.union(assignments.keys).union(deliveries.keys.filter { !$0.isEmpty && $0 != nodeName })
        var congested = false
        for peer in peers {
            let groups = assignments[peer] ?? []
            var committed: (() -> Void)?
            if let groupsCommitted, !groups.isEmpty, message.qos != .atMostOnce {
                groupsCommitted.expect()
                committed = { groupsCommitted.done() }
            }
            if !cluster.forward(
                message, to: peer, plain: plain.contains(peer), groups: groups, deliveries: deliveries[peer] ?? [],
                committed: committed)
            {
                congested = true
            }
        }
        if congested, let publisher, !publisher.readPauses.contains(.peers) {
            // This message is taken; the publisher's next ones wait in TCP until the peer catches up.
            publisher.pauseReading(.peers)
            pausedForPeers.append(publisher)
        }
        return peers.count + (deliveries[""]?.count ?? 0)
    }

    /// A message a peer forwarded: delivered to this node's plain subscribers and to the shared
    /// groups the peer assigned to this node; never forwarded again, never ingested (the
    /// publisher's node did that).
    /// `then` runs once what the message caused here is committed (the sender waits for it).
    public func receivedFromPeer(
        _ message: Message, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        then: (() -> Void)? = nil
    ) {
        stats.forwardedIn += 1
        let now = clock.now()
        if plain || !groups.isEmpty {
            route(message, now: now, sharedGroups: .only(Set(groups)), skipStored: true)
        }
        deliverFromPeer(message, deliveries)
        commitCollected(then: then)
        // Flushed once per read from the link (`peerReadComplete`), not per message.
    }

    /// The node links that were full can take more: publishers paused for them read again.
    public func peersCaughtUp() {
        for connection in pausedForPeers { connection.resumeReading(.peers) }
        pausedForPeers.removeAll()
    }

    /// The end of a read from a node link: what the peer's messages caused is sent.
    public func peerReadComplete() {
        flush()
    }

    // MARK: Sessions across nodes (`Takeover`)

    public func sessionClaimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void) {
        takeover.claimedElsewhere(clientID, by: node, epoch: epoch, acknowledge: acknowledge)
    }

    public func cutOffFromTheStore() { takeover.cutOffFromTheStore() }

    public func reachesTheStoreAgain() -> [Int64] { takeover.reachesTheStoreAgain() }

    public func endedDeliveries(of clientID: String) -> [Int64] { takeover.endedDeliveries(of: clientID) }

    /// Publishes wills taken from the store once in the cluster: those of sessions and
    /// connections whose node died (`DeadNodeSweeper`), or of connections this node let go when
    /// it was cut off and no survivor took.
    public func publishWillsTaken(_ wills: [(clientID: String, will: MQTTWill)]) {
        let now = clock.now()
        for (clientID, will) in wills { publishWill(will, of: clientID, now: now) }
        commitCollected()
        flush()
    }

    /// QoS 1 messages of shared subscriptions that dead nodes' sessions held (taken from the
    /// store once in the cluster by `DeadNodeSweeper`): each goes to another member of its group,
    /// here or on a node with members [MQTT-4.8.2-5].
    public func redispatchShared(_ taken: [(message: StoredMessage, group: ShareGroupKey)]) {
        let now = clock.now()
        for (stored, group) in taken {
            var copy = message(stored)
            copy.storeID = nil  // saved again with a new id: the old payload row may be collected meanwhile
            redeliverShared(
                OutboundMessage(message: copy, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [], shareGroup: group),
                group: group, excluding: "", now: now)
        }
        commitCollected()
        flush()
    }

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
        for stored in messages { retained.set(message(stored)) }
    }
}

/// The peers' commits a publisher's acknowledgement waits for (`Broker.forwardToPeers`): `then`
/// runs once every expected peer has committed, at once when none is expected. Confined to the
/// broker's loop.
final class PeerCommits {
    private var pending = 0
    private var waiter: (() -> Void)?

    func expect() { pending += 1 }

    func done() {
        pending -= 1
        if pending == 0, let waiter {
            self.waiter = nil
            waiter()
        }
    }

    /// Runs `action` when every peer has committed (now, if none is left).
    func then(_ action: @escaping () -> Void) {
        if pending == 0 { action() } else { waiter = action }
    }

    var isSettled: Bool { pending == 0 }
}

/// Which peer serves each shared group of a message (`Broker.placeShared`).
struct SharedPlacement {
    /// The peers' routes matching the message, as `ClusterBus.peers(matching:)` gave them.
    var matching: (plain: Set<String>, groups: [ShareGroupKey: [String]])?
    var peers: [String: [ShareGroupKey]] = [:]
    /// The groups another node serves: not routed here.
    var elsewhere: Set<ShareGroupKey> = []

    var selection: Broker.SharedGroupSelection { elsewhere.isEmpty ? .all : .except(elsewhere) }
}
