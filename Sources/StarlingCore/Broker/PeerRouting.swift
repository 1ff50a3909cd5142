import MQTTCodec
import NIOCore

/// The broker's routing across nodes (docs/architecture.md "Cluster"): this node's routes, the
/// session directory of the other nodes' stored sessions, forwarding what local clients publish
/// to the peers with subscribers and the copies for their stored sessions, delivering what peers
/// forward, and the pickup of rows peers committed for sessions held here whose copies never
/// came. Owns the routes, the directory, the publishers paused for a full link and the pickups
/// in flight. A part of the broker, on its loop.
final class PeerRouting {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker
    /// This node's routes and the changes of the current event.
    var routes = RouteTable()
    /// The other nodes' stored sessions and an index of their subscriptions: messages published
    /// here are queued for them here.
    let directory = SessionDirectory()
    /// Publishers paused because a node link was full; resumed by `peersCaughtUp`.
    var pausedForPeers: [Connection] = []
    /// Pickups reading the store now.
    var pickupsInFlight = 0
    /// When the rows read from the store were last pruned (`pruneReadFromStore`).
    var lastReadFromStorePrune = NIODeadline.uptimeNanoseconds(0)
    /// Second copies of QoS 2 messages kept back (`givenAlready`), logged at most every 10 s.
    var secondCopies = ThrottledCount(interval: .seconds(10))

    init(broker: Broker) {
        self.broker = broker
    }

    /// A local subscription to `filter` was added: the first one makes a route.
    func routeAdded(_ filter: MQTTTopicFilter) { routes.add(filter.raw, announcing: broker.cluster != nil) }

    /// A local subscription to `filter` went: the last one removes the route.
    func routeRemoved(_ filter: MQTTTopicFilter) { routes.remove(filter.raw, announcing: broker.cluster != nil) }

    /// Announces the route changes of this event to the peers; `then` runs once they have them
    /// (at once without a cluster or without changes).
    func announceRoutes(then: @escaping () -> Void) {
        guard let cluster = broker.cluster else { return then() }
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

    /// Where the shared groups matching `message` that have members on peers get it, one node
    /// per group in the whole cluster [MQTT-4.8.2]: chosen by `mqtt.shared_subscription_strategy`
    /// among the nodes with members, this one included (`local`: this one when it has members).
    /// Groups only this node has members of are left to `route`.
    func placeShared(_ message: Message) -> SharedPlacement {
        guard let cluster = broker.cluster else { return SharedPlacement() }
        let matching = cluster.peers(matching: message.topic)
        var placement = SharedPlacement(matching: matching)
        guard !matching.groups.isEmpty else { return placement }
        let here = Set(broker.index.matches(message.topic).groups.map(\.group))
        for (group, peers) in matching.groups where !peers.isEmpty {
            var nodes = peers
            if here.contains(group) {
                if broker.configuration.sharedStrategy == .local { continue }
                nodes.append(broker.nodeName)
            }
            guard let chosen = broker.shared.node(for: group, from: nodes.sorted(), message: message), chosen != broker.nodeName
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
        guard let cluster = broker.cluster else { return 0 }
        let (plain, groups) = copiesOnly ? ([], [:]) : placed.matching ?? cluster.peers(matching: message.topic)
        var assignments = copiesOnly ? [:] : placed.peers
        for (group, peers) in groups where !servedGroups.contains(group) && !placed.elsewhere.contains(group) && !peers.isEmpty {
            // A group placed here that no member here could take (authorization): a peer's.
            let peer = peers.sorted()[Int(stableHash(message.publisher + message.topic) % UInt64(peers.count))]
            assignments[peer, default: []].append(group)
        }
        if let own = deliveries[broker.nodeName] { deliverFromPeer(message, own) }  // sessions being taken over here
        let peers = plain.union(assignments.keys).union(deliveries.keys.filter { !$0.isEmpty && $0 != broker.nodeName })
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
    func receivedFromPeer(
        _ message: Message, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        then: (() -> Void)? = nil
    ) {
        broker.stats.forwardedIn += 1
        let now = broker.clock.now()
        if plain || !groups.isEmpty {
            broker.publishing.route(message, now: now, sharedGroups: .only(Set(groups)), skipStored: true)
        }
        deliverFromPeer(message, deliveries)
        broker.commitCollected(then: then)
        // Flushed once per read from the link (`peerReadComplete`), not per message.
    }

    /// The node links that were full can take more: publishers paused for them read again.
    func peersCaughtUp() {
        for connection in pausedForPeers { connection.resumeReading(.peers) }
        pausedForPeers.removeAll()
    }

    // MARK: What peers say

    /// Entries from a peer (or from the store at start-up). Sessions this node holds are its
    /// own business — unless the peer holds one by a later claim, which did not reach this node
    /// (no link to it then): the session is let go as if the claim had come (its client gets
    /// DISCONNECT 0x8E), when the link is back and the peer's directory arrives.
    func directoryChanged(_ entries: [SessionDirectoryEntry]) {
        for entry in entries {
            if let held = broker.sessions[entry.clientID] {
                // Held by a claim (a session started without one, during a database outage, is
                // not weighed against older entries).
                if entry.subscriptions != nil, let owner = entry.owner, owner != broker.nodeName, held.claimEpoch > 0,
                    entry.epoch > held.claimEpoch
                {
                    broker.sessionClaimedElsewhere(entry.clientID, by: owner, epoch: entry.epoch) {}
                } else if held.isStored {
                    continue
                }
            }
            directory.set(entry)
        }
    }

    /// `owner`'s full set of stored sessions (sent when its link comes up): sessions it no longer
    /// lists are no longer its.
    func directoryReplaced(owner: String, entries: [SessionDirectoryEntry]) {
        let listed = Set(entries.map(\.clientID))
        for entry in directory.entries(ownedBy: owner) where !listed.contains(entry.clientID) {
            directory.set(SessionDirectoryEntry(clientID: entry.clientID, owner: nil, subscriptions: entry.subscriptions))
        }
        directoryChanged(entries)
    }

    // MARK: What this node says

    /// A local stored session began, changed its subscriptions, or ended: announced with this
    /// event's routes.
    func markDirectoryChange(_ session: Session) {
        guard broker.cluster != nil else { return }
        directory.changedHere.insert(session.clientID)
    }

    /// The entries of this event's changes (announced with the routes).
    func takeDirectoryChanges() -> [SessionDirectoryEntry] {
        defer { directory.changedHere.removeAll() }
        return directory.changedHere.map { clientID in
            let session = broker.sessions[clientID].flatMap { $0.isStored ? $0 : nil }
            return SessionDirectoryEntry(
                clientID: clientID, owner: broker.nodeName,
                subscriptions: session.map { Array($0.subscriptions.values) }, epoch: session?.claimEpoch ?? 0)
        }
    }

    /// Every stored session of this node (sent in full when a link to a peer comes up).
    var localDirectory: [SessionDirectoryEntry] {
        broker.sessions.values.filter(\.isStored).map {
            SessionDirectoryEntry(
                clientID: $0.clientID, owner: broker.nodeName, subscriptions: Array($0.subscriptions.values), epoch: $0.claimEpoch)
        }
    }

    // MARK: Routing to other nodes' stored sessions

    /// The copies of `message` for stored sessions held elsewhere, by holding node ("" for
    /// sessions no node holds): QoS 1/2 copies get their rows in the event's writes
    /// (`Broker.writes`, committed before the publisher's acknowledgement), with sequences from
    /// this node's id block.
    func routeToDirectory(_ message: Message) -> [String: [RemoteDelivery]] {
        let grouped = directory.matches(message.topic)
        guard !grouped.isEmpty else { return [:] }
        var copies: [String: [RemoteDelivery]] = [:]
        var stored = message  // its payload is saved with the first row
        for (clientID, subscriptions) in grouped {
            guard let entry = directory[clientID],
                let (qos, retain, identifiers) = Publishing.copy(of: message, for: clientID, through: subscriptions)
            else { continue }
            var delivery = RemoteDelivery(
                clientID: clientID, sequence: nil, messageID: nil, qos: qos, retain: retain,
                subscriptionIdentifiers: identifiers)
            if qos != .atMostOnce {
                let sequence = broker.nextID()
                broker.rows.saveQueueRow(
                    for: clientID, sequence: sequence, message: &stored, qos: qos, retain: retain,
                    subscriptionIdentifiers: identifiers, shareGroup: nil)
                delivery.sequence = sequence
                delivery.messageID = stored.storeID
            } else if entry.owner == nil && broker.takeover.claiming[clientID] == nil {
                continue  // QoS 0 is not kept for a session whose client is away
            }
            // A session this node is taking over gets its copy here, once its row is committed.
            copies[broker.takeover.claiming[clientID] != nil ? broker.nodeName : entry.owner ?? "", default: []].append(delivery)
        }
        return copies
    }

    /// Copies a peer sends for this node's stored sessions (their rows are committed): queued
    /// or sent as if routed here. A session that moved on meanwhile gets its rows from the store.
    func deliverFromPeer(_ message: Message, _ deliveries: [RemoteDelivery]) {
        for delivery in deliveries {
            if broker.takeover.claiming[delivery.clientID] != nil {
                broker.takeover.claiming[delivery.clientID]?.copies.append((message, delivery))
                continue
            }
            guard let session = broker.sessions[delivery.clientID], session.isStored else { continue }
            // Already read from the store (a pickup, a claim, a start-up) or ended: the copy came late.
            if let sequence = delivery.sequence, session.readFromStore[sequence] != nil || session.ended.contains(sequence) { continue }
            guard broker.publishing.isReadable(message.topic, by: delivery.clientID) else {
                if let sequence = delivery.sequence { broker.forgetDelivery(sequence, of: session) }
                continue
            }
            var copy = message
            copy.storeID = delivery.messageID
            let outbound = OutboundMessage(
                message: copy, qos: delivery.qos, retain: delivery.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers, shareGroup: nil,
                sequence: delivery.sequence, committed: true)
            guard !givenAlready(outbound, to: session) else { continue }
            broker.flow.sendOrQueue(outbound, to: session)
        }
    }

    /// The copies that came for a session while this node took it over, now that it is read:
    /// those whose rows the read already brought are not delivered twice.
    func applyClaimBuffer(_ buffered: [(message: Message, delivery: RemoteDelivery)], to clientID: String) {
        guard let session = broker.sessions[clientID], session.isStored, !buffered.isEmpty else { return }
        let known = session.sequencesHeld
        for (message, delivery) in buffered where delivery.sequence.map({ !known.contains($0) }) ?? true {
            deliverFromPeer(message, [delivery])
        }
    }

    /// Starts a pickup: `read` gets the client ids to read rows of, once every write submitted
    /// so far is committed (a delivery that ended before has its row deleted by then).
    func beginPickup(_ read: @escaping ([String]) -> Void) {
        // Not while this node's own writes go to its spool: the store does not have them yet
        // (a delivery that ended would look undelivered).
        guard !broker.storeSpooling && !broker.storeReplaying else { return }
        let clientIDs = broker.sessions.values.filter { $0.isStored && $0.connection != nil }.map(\.clientID)
        guard !clientIDs.isEmpty else { return }
        pickupsInFlight += 1
        broker.durably([]) { read(clientIDs) }
    }

    /// The rows a pickup read (or nothing, when the read failed): those of connected stored
    /// sessions that this node does not hold are delivered, in sequence order.
    func finishPickup(messages: [StoredMessage], deliveries: [StoredDelivery]) {
        pickupsInFlight -= 1
        let now = broker.clock.now()
        let payloads = Dictionary(messages.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var delivered = 0
        for (clientID, rows) in Dictionary(grouping: deliveries, by: \.clientID) {
            guard let session = broker.sessions[clientID], session.isStored, session.connection != nil else { continue }
            let known = session.sequencesHeld.union(session.endedDuringPickup)
            for row in rows.sorted(by: { $0.sequence < $1.sequence })
            where !known.contains(row.sequence) && session.readFromStore[row.sequence] == nil && !session.ended.contains(row.sequence) {
                guard let payload = payloads[row.messageID] else { continue }
                var copy = broker.rows.message(payload)
                copy.storeID = payload.id
                let outbound = OutboundMessage(
                    message: copy, qos: row.qos, retain: row.retain,
                    subscriptionIdentifiers: row.subscriptionIdentifiers, shareGroup: row.shareGroup,
                    sequence: row.sequence, committed: true)
                session.readFromStore[row.sequence] = now
                guard !givenAlready(outbound, to: session) else { continue }
                broker.flow.sendOrQueue(outbound, to: session)
                delivered += 1
            }
        }
        if pickupsInFlight == 0 {
            for session in broker.sessions.values where !session.endedDuringPickup.isEmpty { session.endedDuringPickup.removeAll() }
        }
        if delivered > 0 {
            broker.stats.pickedUp += UInt64(delivered)
            broker.logger.warning(
                "delivered \(delivered) message(s) that peers committed for sessions held here but whose copies never arrived")
        }
        broker.flush()
    }

    /// Forgets, every ten seconds, the rows read from the store and the QoS 2 messages given
    /// more than a minute ago: a peer's late copy comes within its link's wait
    /// (`ClusterRouter.linkWait`); a minute is far beyond it.
    func pruneReadFromStore(now: NIODeadline) {
        guard now - lastReadFromStorePrune >= .seconds(10) else { return }
        lastReadFromStorePrune = now
        for session in broker.sessions.values where !session.readFromStore.isEmpty || !session.givenQoS2.isEmpty {
            session.readFromStore = session.readFromStore.filter { now - $0.value < .seconds(60) }
            session.givenQoS2 = session.givenQoS2.filter { now - $0.value < .seconds(60) }
        }
    }

    /// A copy from a row or a peer of a stored message the session was already given at QoS 2
    /// (another row of the same message for it: [MQTT-4.3.3], the receiver must get it once):
    /// not delivered, its row deleted; counted and logged, for each is a fault's trace.
    func givenAlready(_ outbound: OutboundMessage, to session: Session) -> Bool {
        guard let key = outbound.onceKey, session.givenQoS2[key] != nil else { return false }
        if let sequence = outbound.sequence, !session.sequencesHeld.contains(sequence) { broker.forgetDelivery(sequence, of: session) }
        if let count = secondCopies.add(1, now: broker.clock.now()) {
            broker.logger.warning(
                "kept back \(count) second cop\(count == 1 ? "y" : "ies") of QoS 2 messages already given to their sessions (another row or a peer's copy of the same message; the last: message \(key) for \(session.clientID))"
            )
        }
        return true
    }
}
