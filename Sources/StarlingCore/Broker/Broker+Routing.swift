import MQTTCodec
import NIOCore

extension Broker {
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
        let matches = index.matches(message.topic)
        if matches.isEmpty { return (0, []) }
        var delivered = 0
        var served: Set<ShareGroupKey> = []
        let subscriptions = matches.subscriptions
        if subscriptions.count == 1 {
            let (clientID, subscription) = subscriptions[0]
            if skipStored && sessions[clientID]?.isStored == true {
                // A peer's message: this node's stored sessions got their copies as deliveries.
            } else if let outbound = outbound(message, for: clientID, subscriptions: CollectionOfOne(subscription)),
                let session = sessions[clientID]
            {
                enqueue(outbound, to: session, now: now)
                delivered += 1
            }
        } else if !subscriptions.isEmpty {
            var grouped: [String: [Subscription]] = [:]
            for (clientID, subscription) in subscriptions { grouped[clientID, default: []].append(subscription) }
            for (clientID, list) in grouped {
                if skipStored && sessions[clientID]?.isStored == true { continue }
                guard let session = sessions[clientID], let outbound = outbound(message, for: clientID, subscriptions: list) else {
                    continue
                }
                enqueue(outbound, to: session, now: now)
                delivered += 1
            }
        }
        for (group, members) in matches.groups {
            if case .only(let allowed) = sharedGroups, !allowed.contains(group) { continue }
            if case .except(let excluded) = sharedGroups, excluded.contains(group) { continue }
            let candidates = members.filter { isReadable(message.topic, by: $0.subscriber) }
            guard let chosen = chooseMember(of: group, from: candidates.map(\.subscriber), message: message),
                let subscription = candidates.first(where: { $0.subscriber == chosen })?.value,
                let session = sessions[chosen]
            else { continue }
            var outbound = OutboundMessage(
                message: message, qos: min(message.qos, subscription.qos),
                retain: subscription.retainAsPublished && message.retain,
                subscriptionIdentifiers: subscription.identifier.map { [$0] } ?? [],
                shareGroup: group)
            if outbound.qos == .atMostOnce { outbound.shareGroup = nil }
            enqueue(outbound, to: session, now: now)
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
        authorizer.isAllowed(.subscribe, topic: topic, clientID: clientID, username: sessions[clientID]?.username)
    }

    // MARK: The outbound flow of one session

    /// Sends now if the flow allows, otherwise queues [MQTT-4.9].
    func enqueue(_ outbound: OutboundMessage, to session: Session, now: NIODeadline) {
        if session.isStored && outbound.qos != .atMostOnce {
            // Stored sessions get QoS 1/2 messages once their delivery row is committed (G1).
            var stored = outbound
            storeDelivery(&stored, for: session)
            noteGiven(stored, to: session)
            push(stored, to: session)
            return
        }
        sendOrQueue(outbound, to: session)
    }

    /// A plain QoS 2 delivery of a stored message enters a stored session's flow: remembered
    /// (`Session.givenQoS2`), so another row of the same message is kept back (`PeerRouting`).
    private func noteGiven(_ outbound: OutboundMessage, to session: Session) {
        if session.isStored, let key = outbound.onceKey { session.givenQoS2[key] = clock.now() }
    }

    /// Sends at once if the flow allows, otherwise queues: what `enqueue` does once any row is
    /// written (or for a copy whose row a peer committed).
    func sendOrQueue(_ outbound: OutboundMessage, to session: Session) {
        noteGiven(outbound, to: session)
        guard let connection = session.connection, connection.state == .connected else {
            // QoS 0 is not kept for a disconnected client; QoS 1 and 2 wait in the queue.
            if outbound.qos != .atMostOnce { push(outbound, to: session) }
            return
        }
        if session.queue.isEmpty {
            if outbound.qos == .atMostOnce {
                if connection.transport.isWritable {
                    sendPublish(outbound, packetID: nil, dup: false, on: connection)
                    return
                }
            } else if session.inflight.count < window(of: connection) {
                startInflight(outbound, in: session, on: connection)
                return
            }
        }
        push(outbound, to: session)
    }

    /// The in-flight window: the client's Receive Maximum, capped by `max_inflight` [MQTT-4.9.0-2].
    func window(of connection: Connection) -> Int {
        min(connection.clientReceiveMaximum, configuration.maxInflight)
    }

    /// Appends to the queue, making room by the configured policy; every drop is counted and
    /// logged.
    private func push(_ outbound: OutboundMessage, to session: Session) {
        guard session.queue.count >= configuration.maxQueuedMessages else {
            session.queue.append(outbound)
            return
        }
        // Full: the oldest QoS 0 message goes first; then the policy decides.
        let dropped: OutboundMessage
        if let qos0 = session.queue.removeOldestQoS0() {
            dropped = qos0
            session.queue.append(outbound)
        } else if configuration.queueFullPolicy == .dropOldest {
            dropped = session.queue.removeFirst()
            session.queue.append(outbound)
        } else {
            dropped = outbound
        }
        if let sequence = dropped.sequence {
            forgetDelivery(sequence, of: session)
        }
        countDrops(1, reason: "queue of \(session.clientID) is full (\(configuration.maxQueuedMessages) messages)")
    }

    /// Sends queued messages while the flow allows.
    func pump(_ session: Session) {
        guard let connection = session.connection, connection.state == .connected else { return }
        let now = clock.now()
        let window = window(of: connection)
        while let next = session.queue.first {
            if let sequence = next.sequence, !next.committed, sequence > session.durableSequence { return }  // not committed yet
            if next.message.isExpired(at: now) {  // [MQTT-3.3.2-5]
                session.queue.removeFirst()
                if let sequence = next.sequence {
                    forgetDelivery(sequence, of: session)
                }
                continue
            }
            if next.qos == .atMostOnce {
                guard connection.transport.isWritable else { return }
                session.queue.removeFirst()
                sendPublish(next, packetID: nil, dup: false, on: connection)
            } else {
                guard session.inflight.count < window else { return }
                session.queue.removeFirst()
                startInflight(next, in: session, on: connection)
            }
        }
    }

    private func startInflight(_ outbound: OutboundMessage, in session: Session, on connection: Connection) {
        guard let id = session.allocatePacketID() else { return push(outbound, to: session) }
        session.inflight[id] = InflightMessage(outbound: outbound, stage: .published, sent: false)
        session.inflightOrder.append(id)
        guard let sequence = outbound.sequence else { return publishInflight(id, of: session, on: connection) }
        writes.append(.updateDelivery(clientID: session.clientID, sequence: sequence, state: .sent, packetID: id))
        guard outbound.qos == .exactlyOnce else { return publishInflight(id, of: session, on: connection) }
        // [MQTT-4.3.3] A QoS 2 PUBLISH goes out once its packet id is durable with the row. The
        // client holds the message under that id until the PUBREL; a holder that did not know
        // the id (this node restarted, or another node took the session over) could give it to
        // another message, which the client would take for a duplicate of the first. Committed
        // only to the spool, it waits for the replay, as the PUBREL does (`handlePubRec`).
        commitCollected { [self] in
            guard session.connection === connection, connection.state == .connected else { return }
            if withholdsReleases(of: session) {
                session.withheldPublishes.append(id)
            } else {
                publishInflight(id, of: session, on: connection)
            }
        }
    }

    /// Sends the PUBLISH of an in-flight delivery whose packet id is recorded; one too large for
    /// the client is dropped [MQTT-3.1.2-25].
    func publishInflight(_ id: UInt16, of session: Session, on connection: Connection) {
        guard var entry = session.inflight[id], entry.stage == .published else { return }
        guard sendPublish(entry.outbound, packetID: id, dup: entry.sent, on: connection) else { return finishInflight(id, in: session) }
        entry.sent = true
        session.inflight[id] = entry
    }

    /// Encodes and writes one PUBLISH to a client.
    /// - Returns: false when the message is too large for the client and was dropped
    ///   [MQTT-3.1.2-25].
    @discardableResult
    func sendPublish(_ outbound: OutboundMessage, packetID: UInt16?, dup: Bool, on connection: Connection) -> Bool {
        let message = outbound.message
        var properties = message.properties
        let now = clock.now()
        if let remaining = message.remainingExpiry(at: now) { properties.append(.messageExpiryInterval(remaining)) }
        for id in outbound.subscriptionIdentifiers { properties.append(.subscriptionIdentifier(id)) }  // [MQTT-3.3.4-3]
        var topic = message.topic
        if connection.clientTopicAliasMaximum > 0 && connection.version == .v5 {
            if let alias = connection.outboundAliases[topic] {
                properties.append(.topicAlias(alias))
                topic = ""
            } else if connection.outboundAliases.count < Int(connection.clientTopicAliasMaximum) {
                let alias = UInt16(connection.outboundAliases.count + 1)
                connection.outboundAliases[topic] = alias
                properties.append(.topicAlias(alias))
            }
        }
        let publish = MQTTPublish(
            topic: topic, payload: message.payload, qos: outbound.qos, retain: outbound.retain,
            dup: dup, packetID: packetID, properties: connection.version == .v5 ? properties : [])
        let packet = MQTTPacket.publish(publish)
        if connection.clientMaximumPacketSize != Int.max
            && packet.encodedSize(version: connection.version) > connection.clientMaximumPacketSize
        {
            if topic.isEmpty == false, connection.outboundAliases[message.topic] != nil, properties.topicAlias != nil {
                // The alias was assigned for a packet that is not sent: forget it.
                connection.outboundAliases[message.topic] = nil
            }
            countDrops(1, reason: "message on \(message.topic) exceeds the Maximum Packet Size of \(connection.clientID)")
            return false
        }
        send(packet, on: connection)
        stats.publishSent += 1
        return true
    }

    // MARK: Shared subscriptions

    /// Picks the member of a shared group that receives a message, preferring connected ones.
    func chooseMember(of group: ShareGroupKey, from members: [String], message: Message) -> String? {
        let online = members.filter { sessions[$0]?.isConnected == true }
        return shared.member(of: group, from: (online.isEmpty ? members : online).sorted(), message: message)
    }

    /// Gives a QoS 1 message of a shared group to another member after its session ended
    /// [MQTT-4.8.2-5]: one on this node, else (in a cluster) a node with members.
    func redeliverShared(_ outbound: OutboundMessage, group: ShareGroupKey, excluding clientID: String, now: NIODeadline) {
        let members =
            index.matches(outbound.message.topic).groups
            .first { $0.group == group }?.members.map(\.subscriber).filter { $0 != clientID } ?? []
        if let chosen = chooseMember(of: group, from: members, message: outbound.message), let session = sessions[chosen] {
            return enqueue(outbound, to: session, now: now)
        }
        if let cluster, let peers = cluster.peers(matching: outbound.message.topic).groups[group], !peers.isEmpty,
            let peer = shared.node(for: group, from: peers.sorted(), message: outbound.message)
        {
            _ = cluster.forward(outbound.message, to: peer, plain: false, groups: [group], deliveries: [])
            return
        }
        countDrops(1, reason: "no other member of shared group \(group.name) for a QoS 1 message")
    }

    // MARK: Drops

    /// Counts dropped messages and logs at most one warning every ten seconds.
    func countDrops(_ count: Int, reason: String) {
        guard count > 0 else { return }
        stats.messagesDropped += UInt64(count)
        guard let dropped = drops.add(count, now: clock.now()) else { return }
        logger.warning("dropped \(dropped) message(s); latest: \(reason)")
    }
}
