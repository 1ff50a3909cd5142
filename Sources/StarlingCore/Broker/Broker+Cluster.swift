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

    // MARK: Sessions across nodes

    /// Runs `accept` once this node holds `clientID`'s session: at once when it already does or
    /// runs alone; otherwise after claiming it from the store (and from the node that held it).
    /// The client's packets wait meanwhile, in order, as during a password check.
    func claimThenAccept(_ clientID: String, on connection: Connection, _ accept: @escaping () -> Void) {
        // While the store is unreachable only sessions that need no claim get here
        // (`outageRefusal`): they start without one.
        guard let cluster, sessions[clientID] == nil, !storeSpooling else { return accept() }
        connection.state = .authenticating
        if connection.authentication == nil { connection.authentication = ConnectionAuthentication() }
        connection.pauseReading(.authentication)
        if storeReplaying {
            // This node's spool is being replayed: what it holds of the session may not be in the
            // store yet. The claim waits for the replay (at most the CONNECT timeout) rather than
            // being refused (G7: a node that reaches the store serves claims).
            claimsAfterReplay.append { [self] in
                guard connection.state == .authenticating else { return }
                if storeSpooling { return refuseClaim(connection, "the session store cannot be reached to take the session over") }
                claim(clientID, on: connection, through: cluster, accept)
            }
            return
        }
        claim(clientID, on: connection, through: cluster, accept)
    }

    /// The replay of this node's spool ended (the store is direct again, or away again): the
    /// claims that waited for it go on.
    func replayEnded() {
        let waiting = claimsAfterReplay
        claimsAfterReplay.removeAll()
        for claim in waiting { claim() }
        flush()
    }

    /// A claim that cannot be made: the client is refused (0x88, 3.1.1 rc 3).
    private func refuseClaim(_ connection: Connection, _ message: String) {
        connection.resumeReading(.authentication)
        connection.authentication = nil
        connection.state = .awaitingConnect
        refuse(connection, reason: .serverUnavailable, message: message)
        flush()
    }

    private func claim(_ clientID: String, on connection: Connection, through cluster: any ClusterBus, _ accept: @escaping () -> Void) {
        // From here on, copies for the session wait here instead of going to the old holder;
        // what this node routed to it before is committed before the session is read, as
        // every peer's is (they acknowledge the claim after their commits).
        claiming[clientID] = claiming[clientID] ?? ClaimInProgress()
        commitCollected { [self] in
            // Unknown to the directory: it may have deliveries.
            let subscribed = directory[clientID].map { !($0.subscriptions ?? []).isEmpty } ?? true
            cluster.claimSession(clientID, subscribed: subscribed) { [self] claim in
                let progress = claiming.removeValue(forKey: clientID) ?? ClaimInProgress()
                guard connection.state == .authenticating else { return }  // closed meanwhile
                // Of two claims of one session at once (two CONNECTs on two nodes), the later
                // epoch owns it: the other node's client is refused, so one node serves it.
                guard let claim, progress.latestRival < claim.epoch else {
                    return refuseClaim(
                        connection,
                        claim == nil
                            ? "the session store cannot be reached to take the session over"
                            : "another node took the session over at the same time (claim \(claim!.epoch) < \(progress.latestRival))")
                }
                if sessions[clientID] == nil {
                    directory.forget(clientID)
                    restoreSessions(claim.state, now: clock.now())
                    dropEnded(claim.ended, of: clientID)
                    if let session = sessions[clientID], session.isStored { markDirectoryChange(session) }
                    applyClaimBuffer(progress.copies, to: clientID)
                }
                connection.claimEpoch = claim.epoch
                // Peers learn the session's routes before its CONNACK.
                announceRoutes { [self] in
                    guard connection.state == .authenticating else { return }
                    connection.resumeReading(.authentication)
                    let held = connection.authentication?.held ?? []
                    connection.authentication = nil
                    connection.state = .awaitingConnect
                    accept()
                    for packet in held where connection.state != .closed { handlePacket(packet, on: connection) }
                    commitCollected()
                    flush()
                }
            }
        }
    }

    /// Another node claimed `clientID`'s session: its connection here (if any) gets DISCONNECT
    /// 0x8E [MQTT-3.1.4-3] and the session is let go without a write (it is the other node's
    /// now; the store refuses this node's writes to its row).
    /// `acknowledge` runs once every write this node accepted for the session is committed:
    /// the claiming node reads the session after that, so a message acknowledged here just
    /// before the claim is in the queue it reads (G1 across a takeover).
    /// A claim with an epoch below that of this node's own claim of the session lost to it
    /// (they crossed): it changes nothing here.
    public func sessionClaimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void) {
        defer { commitCollected(then: acknowledge) }
        if var progress = claiming[clientID] {
            progress.latestRival = max(progress.latestRival, epoch)
            claiming[clientID] = progress
        }
        if let held = sessions[clientID], held.claimEpoch > epoch { return }
        if var entry = directory[clientID] {
            entry.owner = node
            directory.set(entry)
        }
        guard let session = sessions[clientID] else { return }
        if session.connection != nil {
            logger.info("session taken over by node \(node)", metadata: ["mqtt.client_id": "\(clientID)"])
        }
        letGo(session, to: node, reason: .sessionTakenOver)
        announceRoutes {}
        flush()
    }

    /// Lets a session go without a write (it is `owner`'s now, or a survivor's to let go): its
    /// subscriptions stay in this node's directory; its connection, if any, is closed with
    /// DISCONNECT `reason` (5.0) and without its will.
    func letGo(_ session: Session, to owner: String?, reason: MQTTReasonCode) {
        sessions[session.clientID] = nil
        if !session.ended.isEmpty { endedOfLetGo[session.clientID] = (session.ended, clock.now()) }
        directory.changedHere.remove(session.clientID)
        if session.isStored {
            directory.set(
                SessionDirectoryEntry(clientID: session.clientID, owner: owner, subscriptions: Array(session.subscriptions.values)))
        }
        session.isStored = false
        removeSubscriptions(of: session)
        session.queue.removeAll()
        session.inflight.removeAll()
        session.inflightOrder.removeAll()
        session.withheldReleases.removeAll()
        session.withheldPublishes.removeAll()
        guard let connection = session.connection else { return }
        session.connection = nil
        connection.session = nil
        connection.publishWillOnClose = false
        // Not before its CONNACK [MQTT-3.2.0-1]: a connection whose CONNACK still waits for
        // its commit is closed without a word.
        if connection.version == .v5 && connection.state == .connected {
            send(.disconnect(MQTTDisconnect(reasonCode: reason)), on: connection)
        }
        close(connection)
    }

    /// This node lost the database while its peers did not (a partition): the survivors will
    /// let its sessions go and publish its clients' wills from the store, so it lets every
    /// session go now, without a write (DISCONNECT 0x89 Server busy: the clients reconnect, to
    /// a node that can serve them). The wills of connections whose sessions are not stored stay
    /// in the store for the survivors; if this node holds its lease again first, it publishes
    /// those still there itself (`cutOffWills`).
    public func cutOffFromTheStore() {
        clusterCutOff = true
        letGoOfEverySession()
    }

    /// Back from being cut off: ready again; the wills of the connections let go meanwhile
    /// are published if the store still has them (no survivor took them).
    public func reachesTheStoreAgain() -> [Int64] {
        clusterCutOff = false
        defer { cutOffWills.removeAll() }
        return cutOffWills.map(\.token)
    }

    private func letGoOfEverySession() {
        for session in Array(sessions.values) {
            if let connection = session.connection, let token = connection.willToken, let will = session.will {
                connection.willToken = nil
                cutOffWills.append((session.clientID, token, will))
            }
            letGo(session, to: nil, reason: .serverBusy)
        }
        for connection in connections where connection.session == nil && connection.state != .closed {
            close(connection)  // still connecting
        }
        announceRoutes {}
        flush()
    }

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

/// A claim this node has under way: the copies for the session that arrived (or were routed
/// here) before it was read, applied once it is; the latest epoch of a rival claim of the same
/// session by another node meanwhile.
struct ClaimInProgress {
    var copies: [(message: Message, delivery: RemoteDelivery)] = []
    var latestRival: Int64 = 0
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
