import Crypto
import MQTTCodec
import NIOCore

/// PUBLISH on this node: a client's PUBLISH checked, ingested and routed, its acknowledgement
/// sent once what it waits for is committed (in the order of the PUBLISH packets), the routing
/// of a message to this node's sessions (plain subscriptions and shared groups) and a QoS 2
/// release (PUBREL) from a client. One of the broker's parts (`Broker.publishing`), confined
/// to its event loop like the broker.
final class Publishing {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    // MARK: PUBLISH from a client

    func handlePublish(_ publish: MQTTPublish, on connection: Connection) {
        guard let session = connection.session else { return }
        let context = PublishCheck.Context(
            version: connection.version, aliases: connection.inboundAliases, inboundQoS2: session.inboundQoS2,
            unacknowledgedQoS1: connection.unacknowledgedQoS1)
        let verdict = PublishCheck.verdict(publish, context, configuration: broker.configuration) { topic in
            broker.authorizer.isAllowed(.publish, topic: topic, clientID: connection.clientID, username: connection.username)
        }
        switch verdict {
        case .accept(let topic, let learnsAlias):
            if let learnsAlias { connection.inboundAliases[learnsAlias] = topic }
            publishAccepted(publish, topic: topic, session: session, on: connection)
        case .disconnect(let reason, let message, let spec):
            broker.fail(connection, reason, message, spec: spec)
        case .refuse(let reason, let message):
            guard let id = publish.packetID else { return }
            broker.durably([]) { [self] in acknowledge(publish, id: id, reason: reason, message: message, on: connection) }
        case .duplicateQoS2:
            guard let id = publish.packetID else { return }
            // Only while this node's copy of the session holds: one claimed elsewhere meanwhile
            // (links cut) may know a packet id the client has since released and used for a new
            // message, which a PUBREC here would acknowledge and drop (G1).
            let fence = broker.fenceNothing(for: connection)
            broker.commitCollected(fence: fence) { [self] in broker.send(.pubrec(MQTTAck(packetID: id)), on: connection) }
        case .denied(let topic):
            // 5.0 says why; 3.x acknowledges and drops, as it cannot say.
            broker.logger.info("publish denied", metadata: ["mqtt.client_id": "\(connection.clientID)", "topic": "\(topic)"])
            guard let id = publish.packetID else { return }
            if publish.qos == .exactlyOnce && connection.version != .v5 { session.inboundQoS2.insert(id) }
            broker.durably([]) {
                self.acknowledge(publish, id: id, reason: .notAuthorized, message: "not authorized to publish to \(topic)", on: connection)
            }
        }
    }

    /// A PUBLISH that passed the checks: ingested, retained, routed here and to the peers; its
    /// acknowledgement waits for the commit of everything it caused (G1).
    private func publishAccepted(_ publish: MQTTPublish, topic: String, session: Session, on connection: Connection) {
        let now = broker.clock.now()
        let message = Message(publish: publish, topic: topic, publisher: connection.clientID, now: now)
        let firstWrite = broker.writes.count
        ingest(publish, topic: topic, connection: connection)
        if broker.persistence?.isBacklogged == true && !connection.readPauses.contains(.store) {
            // This message is taken; the client's next ones wait in TCP until the store catches up.
            connection.pauseReading(.store)
            broker.pausedForStore.append(connection)
        }
        if publish.retain {
            broker.rows.retain(message)  // [MQTT-3.3.1-5]
            // Peers serve it too: QoS 0 at once; QoS 1/2 before the ack, below.
            if publish.qos == .atMostOnce { broker.cluster?.retainedChanged(message) {} }
        }
        let placement = broker.peers.placeShared(message)
        let routed = route(message, now: now, sharedGroups: placement.selection)
        // QoS 0 on a node alone: nothing goes to peers and no acknowledgement waits.
        guard publish.packetID != nil || broker.cluster != nil else { return }
        var routing = AcceptedPublish(message: message, placement: placement, servedGroups: routed.servedGroups, matched: routed.delivered)
        // Other nodes' stored sessions: their rows commit with this message's (G1 across nodes).
        routing.remoteCopies = broker.cluster == nil ? [:] : broker.peers.routeToDirectory(message)
        if let cluster = broker.cluster {
            // QoS 0 and 1 go to the peers' clean subscribers now, as to local ones (a QoS 1
            // message may arrive twice if its publisher re-sends it after a crash, as the
            // protocol allows); QoS 2 once committed here, with the PUBREC (it must not arrive
            // twice); copies for stored sessions once their rows are committed.
            let copies = routing.remoteCopies.values.reduce(0) { $0 + $1.count }
            switch publish.qos {
            case .atMostOnce:
                routing.matched += broker.peers.forwardToPeers(
                    message, servedGroups: routing.servedGroups, placed: placement, deliveries: routing.remoteCopies,
                    from: connection)
            case .atLeastOnce:
                routing.matched +=
                    broker.peers.forwardToPeers(
                        message, servedGroups: routing.servedGroups, placed: placement, from: connection,
                        groupsCommitted: routing.groupsCommitted) + copies
            case .exactlyOnce:
                let remote = placement.matching ?? cluster.peers(matching: message.topic)
                routing.matched += remote.plain.count + remote.groups.count + copies
            }
        }
        guard let id = publish.packetID else { return }
        if publish.qos == .exactlyOnce {
            session.inboundQoS2.insert(id)
            if session.isStored { broker.writes.append(.addInboundQoS2(clientID: session.clientID, packetID: id)) }
        }
        if publish.qos == .atLeastOnce {
            connection.unacknowledgedQoS1 += 1
            // A 3.x client has no Receive Maximum: stop reading from it instead, so what
            // waits for the store stays bounded.
            if connection.version != .v5 && connection.unacknowledgedQoS1 == Int(broker.configuration.receiveMaximum) {
                connection.pauseReading(.acknowledgements)
            }
        }
        let fence = broker.fenceCollected(from: firstWrite, for: connection)
        // G1: PUBACK / PUBREC only once everything the message caused is committed.
        broker.commitCollected(fence: fence) { [self] in committed(publish, id: id, routing, on: connection) }
    }

    /// What a PUBLISH caused is committed: the copies that waited for it go to the peers, and
    /// the client is acknowledged.
    private func committed(_ publish: MQTTPublish, id: UInt16, _ routing: AcceptedPublish, on connection: Connection) {
        let message = routing.message
        if publish.qos == .exactlyOnce {
            // Gone to the spool, the commit reaches the shared store only with the replay,
            // and under a fence it is decided only there: left out if a later claim took
            // the session meanwhile (a node frozen or cut off, whose device re-sent the
            // message elsewhere). Peers' stored sessions get their copies from the
            // replayed rows (the pickup), never one from here: a copy delivered now would
            // have its row deleted before the replay inserts it, and the row would be
            // delivered again [MQTT-4.3.3].
            let undecided = broker.storeSpooling || broker.storeReplaying
            broker.peers.forwardToPeers(
                message, servedGroups: routing.servedGroups, placed: routing.placement, deliveries: undecided ? [:] : routing.remoteCopies,
                groupsCommitted: routing.groupsCommitted)
        } else if publish.qos == .atLeastOnce && !routing.remoteCopies.isEmpty {
            broker.peers.forwardToPeers(message, servedGroups: [], deliveries: routing.remoteCopies, copiesOnly: true)
        }
        if publish.qos == .atLeastOnce {
            connection.unacknowledgedQoS1 -= 1
            if connection.version != .v5 && connection.unacknowledgedQoS1 == Int(broker.configuration.receiveMaximum) - 1 {
                connection.resumeReading(.acknowledgements)
            }
        }
        let reason: MQTTReasonCode = routing.matched == 0 ? .noMatchingSubscribers : .success
        // The ack waits (in order) for the peers serving shared groups to commit their
        // members' rows, and for a retained change to be applied by every linked peer:
        // no window in which a peer serves an older retained value after the ack.
        let retainedOnPeers = publish.retain ? broker.cluster : nil
        guard retainedOnPeers != nil || !routing.groupsCommitted.isSettled else {
            return acknowledge(publish, id: id, reason: reason, message: nil, on: connection)
        }
        let held = holdAcknowledgement(on: connection) { [self] in
            writeAcknowledgement(publish, id: id, reason: reason, message: nil, on: connection)
        }
        routing.groupsCommitted.then { [self] in
            guard let retainedOnPeers else { return release(held, on: connection) }
            retainedOnPeers.retainedChanged(message) { [self] in release(held, on: connection) }
        }
    }

    /// PUBACK (QoS 1) or PUBREC (QoS 2) for an incoming PUBLISH, written now: callers run it from
    /// a commit callback or through `durably`, which keeps acks in order.
    func acknowledge(_ publish: MQTTPublish, id: UInt16, reason: MQTTReasonCode, message: String?, on connection: Connection) {
        if let chain = connection.heldAcknowledgements {
            // An earlier ack waits for the peers: this one goes after it.
            chain.entries.append(
                HeldAcknowledgement(ready: true) { [self] in
                    writeAcknowledgement(publish, id: id, reason: reason, message: message, on: connection)
                })
            return
        }
        writeAcknowledgement(publish, id: id, reason: reason, message: message, on: connection)
    }

    private func writeAcknowledgement(
        _ publish: MQTTPublish, id: UInt16, reason: MQTTReasonCode, message: String?, on connection: Connection
    ) {
        var properties: MQTTProperties = []
        if let message, connection.requestProblemInformation { properties.append(.reasonString(message)) }
        let ack = MQTTAck(packetID: id, reasonCode: reason, properties: properties)
        broker.send(publish.qos == .exactlyOnce ? .pubrec(ack) : .puback(ack), on: connection)
    }

    // MARK: Acknowledgements from a client

    func handlePubRel(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session else { return }
        let start = broker.writes.count
        let known = session.inboundQoS2.remove(ack.packetID) != nil
        // The store may hold the entry even for a session it does not keep (the ingest bridge
        // writes it with the row), so it is removed whenever there is a store.
        if known && broker.persistence != nil {
            broker.writes.append(.removeInboundQoS2(clientID: session.clientID, packetID: ack.packetID))
        }
        let reason: MQTTReasonCode = known || connection.version != .v5 ? .success : .packetIdentifierNotFound
        // PUBCOMP once the id is durably free: a client may reuse it right after [MQTT-4.3.3-11];
        // and only while this node's copy of the session holds (G1: freed on a node whose copy
        // is stale, the id would stay held by the session's holder, which would answer the
        // client's next message under it as a duplicate and drop it).
        let fence = broker.fenceCollected(from: start, for: connection) ?? broker.fenceNothing(for: connection)
        broker.commitCollected(fence: fence) { [self] in
            broker.send(.pubcomp(MQTTAck(packetID: ack.packetID, reasonCode: reason)), on: connection)
        }
    }

    /// Queues an acknowledgement that is sent once `release` is called for it (and every one
    /// before it is sent).
    func holdAcknowledgement(on connection: Connection, _ send: @escaping () -> Void) -> HeldAcknowledgement {
        let chain = connection.heldAcknowledgements ?? AcknowledgementChain()
        connection.heldAcknowledgements = chain
        let held = HeldAcknowledgement(ready: false, send: send)
        chain.entries.append(held)
        return held
    }

    func release(_ held: HeldAcknowledgement, on connection: Connection) {
        held.ready = true
        guard let chain = connection.heldAcknowledgements else { return }
        var sent = 0
        while sent < chain.entries.count, chain.entries[sent].ready { sent += 1 }
        let ready = chain.entries.prefix(sent)
        chain.entries.removeFirst(sent)
        if chain.entries.isEmpty { connection.heldAcknowledgements = nil }
        for entry in ready { entry.send() }
        broker.flush()
    }

    /// Delivers a message to every matching subscription: one copy per session at the highest
    /// granted QoS, carrying every matching Subscription Identifier [MQTT-3.3.4-2..5]; one member
    /// of each shared group [MQTT-4.8.2].
    /// - Parameter sharedGroups: which shared groups may get it here: all (a local publish), or
    ///   those a peer assigned to this node (a forwarded message).
    /// - Returns: how many sessions it was given to, and the shared groups that got it here.
    @discardableResult
    func route(
        _ message: Message, now: NIODeadline, sharedGroups: SharedGroupSelection = .all,
        skipStored: Bool = false
    ) -> (delivered: Int, servedGroups: Set<ShareGroupKey>) {
        let matches = broker.index.matches(message.topic)
        if matches.isEmpty { return (0, []) }
        var delivered = 0
        var served: Set<ShareGroupKey> = []
        let subscriptions = matches.subscriptions
        if subscriptions.count == 1 {
            let (clientID, subscription) = subscriptions[0]
            if skipStored && broker.sessions[clientID]?.isStored == true {
                // A peer's message: this node's stored sessions got their copies as deliveries.
            } else if let outbound = outbound(message, for: clientID, subscriptions: CollectionOfOne(subscription)),
                let session = broker.sessions[clientID]
            {
                broker.flow.enqueue(outbound, to: session, now: now)
                delivered += 1
            }
        } else if !subscriptions.isEmpty {
            var grouped: [String: [Subscription]] = [:]
            for (clientID, subscription) in subscriptions { grouped[clientID, default: []].append(subscription) }
            for (clientID, list) in grouped {
                if skipStored && broker.sessions[clientID]?.isStored == true { continue }
                guard let session = broker.sessions[clientID], let outbound = outbound(message, for: clientID, subscriptions: list) else {
                    continue
                }
                broker.flow.enqueue(outbound, to: session, now: now)
                delivered += 1
            }
        }
        for (group, members) in matches.groups {
            if case .only(let allowed) = sharedGroups, !allowed.contains(group) { continue }
            if case .except(let excluded) = sharedGroups, excluded.contains(group) { continue }
            let candidates = members.filter { isReadable(message.topic, by: $0.subscriber) }
            guard let chosen = chooseMember(of: group, from: candidates.map(\.subscriber), message: message),
                let subscription = candidates.first(where: { $0.subscriber == chosen })?.value,
                let session = broker.sessions[chosen]
            else { continue }
            var outbound = OutboundMessage(
                message: message, qos: min(message.qos, subscription.qos),
                retain: subscription.retainAsPublished && message.retain,
                subscriptionIdentifiers: subscription.identifier.map { [$0] } ?? [],
                shareGroup: group)
            if outbound.qos == .atMostOnce { outbound.shareGroup = nil }
            broker.flow.enqueue(outbound, to: session, now: now)
            delivered += 1
            served.insert(group)
        }
        return (delivered, served)
    }

    /// Which shared groups a routing may deliver to.
    enum SharedGroupSelection {
        case all
        case only(Set<ShareGroupKey>)
        /// All but these (another node serves them).
        case except(Set<ShareGroupKey>)
    }

    /// The copy one session receives through its (possibly overlapping) plain subscriptions,
    /// or nil when No Local or authorization leaves none.
    private func outbound(_ message: Message, for clientID: String, subscriptions: some Collection<Subscription>) -> OutboundMessage? {
        guard let copy = Self.copy(of: message, for: clientID, through: subscriptions), isReadable(message.topic, by: clientID) else {
            return nil
        }
        return OutboundMessage(
            message: message, qos: copy.qos, retain: copy.retain, subscriptionIdentifiers: copy.identifiers, shareGroup: nil)
    }

    /// What one session's copy carries through its (possibly overlapping) subscriptions: the
    /// highest granted QoS, RETAIN as published where asked, every Subscription Identifier; nil
    /// when No Local leaves none.
    static func copy(of message: Message, for clientID: String, through subscriptions: some Collection<Subscription>)
        -> (qos: MQTTQoS, retain: Bool, identifiers: [Int])?
    {
        var qos: MQTTQoS?
        var retain = false
        var identifiers: [Int] = []
        for subscription in subscriptions {
            if subscription.noLocal && clientID == message.publisher { continue }  // [MQTT-3.8.3-3]
            qos = max(qos ?? .atMostOnce, min(message.qos, subscription.qos))  // [MQTT-3.8.4-8]
            if subscription.retainAsPublished && message.retain { retain = true }  // [MQTT-3.3.1-12/13]
            if let id = subscription.identifier { identifiers.append(id) }
        }
        return qos.map { ($0, retain, identifiers) }
    }

    /// Whether the subscriber may receive messages of this topic (subscribe rules apply to the
    /// topics delivered, not only to the filters subscribed).
    func isReadable(_ topic: String, by clientID: String) -> Bool {
        broker.authorizer.isAllowed(.subscribe, topic: topic, clientID: clientID, username: broker.sessions[clientID]?.username)
    }

    // MARK: Shared subscriptions

    /// Picks the member of a shared group that receives a message, preferring connected ones.
    func chooseMember(of group: ShareGroupKey, from members: [String], message: Message) -> String? {
        let online = members.filter { broker.sessions[$0]?.isConnected == true }
        return broker.shared.member(of: group, from: (online.isEmpty ? members : online).sorted(), message: message)
    }

    /// Gives a QoS 1 message of a shared group to another member after its session ended
    /// [MQTT-4.8.2-5]: one on this node, else (in a cluster) a node with members.
    func redeliverShared(_ outbound: OutboundMessage, group: ShareGroupKey, excluding clientID: String, now: NIODeadline) {
        let members =
            broker.index.matches(outbound.message.topic).groups
            .first { $0.group == group }?.members.map(\.subscriber).filter { $0 != clientID } ?? []
        if let chosen = chooseMember(of: group, from: members, message: outbound.message), let session = broker.sessions[chosen] {
            return broker.flow.enqueue(outbound, to: session, now: now)
        }
        if let cluster = broker.cluster, let peers = cluster.peers(matching: outbound.message.topic).groups[group], !peers.isEmpty,
            let peer = broker.shared.node(for: group, from: peers.sorted(), message: outbound.message)
        {
            _ = cluster.forward(outbound.message, to: peer, plain: false, groups: [group], deliveries: [])
            return
        }
        broker.countDrops(1, reason: "no other member of shared group \(group.name) for a QoS 1 message")
    }

    /// Queues the ingest row of an incoming PUBLISH with the writes its ack waits for (G1, G2).
    /// QoS 2 re-sends are caught before this (in memory) and again in the store.
    func ingest(_ publish: MQTTPublish, topic: String, connection: Connection) {
        let ingest = broker.configuration.ingest
        guard broker.persistence != nil, ingest.covers(topic) else { return }
        let dedup: IngestRecord.Dedup =
            switch publish.qos {
            case .atMostOnce: .none
            case .atLeastOnce: .qos1(dup: publish.dup, contentOnly: ingest.dedup == .content)
            case .exactlyOnce: .qos2
            }
        if publish.qos == .exactlyOnce, connection.session?.isStored != true { broker.clientsWithStoredQoS2.insert(connection.clientID) }
        broker.writes.append(
            .ingest(
                IngestRecord(
                    receivedAt: broker.clock.wallClockMilliseconds(), clientID: connection.clientID, username: connection.username,
                    packetID: publish.packetID, topic: topic, payload: publish.payload, qos: publish.qos.rawValue, retain: publish.retain,
                    contentType: publish.properties.contentType, userProperties: publish.properties.userProperties,
                    contentHash: Self.contentHash(topic: topic, payload: publish.payload), nodeID: ingest.nodeID, dedup: dedup)))
    }

    /// SHA-256 of the topic name, a zero byte, and the payload (docs/architecture.md, "The ingest bridge").
    static func contentHash(topic: String, payload: ByteBuffer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: Array(topic.utf8))
        hasher.update(data: [0])
        payload.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }
}

// MARK: Shared messages of dead nodes

extension Publishing {
    /// QoS 1 messages of shared subscriptions that dead nodes' sessions held (taken from the
    /// store once in the cluster by `DeadNodeSweeper`): each goes to another member of its group,
    /// here or on a node with members [MQTT-4.8.2-5].
    func redispatchShared(_ taken: [(message: StoredMessage, group: ShareGroupKey)]) {
        let now = broker.clock.now()
        for (stored, group) in taken {
            var copy = broker.rows.message(stored)
            copy.storeID = nil  // saved again with a new id: the old payload row may be collected meanwhile
            redeliverShared(
                OutboundMessage(message: copy, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [], shareGroup: group),
                group: group, excluding: "", now: now)
        }
        broker.commitCollected()
        broker.flush()
    }
}
