import MQTTCodec
import NIOCore

/// The outbound flow of sessions [MQTT-4.9]: the queue, the in-flight window, the PUBLISH as
/// the client may take it (topic aliases, Maximum Packet Size) and the client's
/// acknowledgements of deliveries (PUBACK, PUBREC, PUBCOMP). Each session holds its queue and
/// in-flight entries; this part makes the decisions. One of the broker's parts
/// (`Broker.flow`), confined to its event loop like the broker.
final class OutboundFlow {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    // MARK: The outbound flow of one session

    /// Sends now if the flow allows, otherwise queues [MQTT-4.9].
    func enqueue(_ outbound: OutboundMessage, to session: Session, now: NIODeadline) {
        if session.isStored && outbound.qos != .atMostOnce {
            // Stored sessions get QoS 1/2 messages once their delivery row is committed (G1).
            var stored = outbound
            broker.rows.storeDelivery(&stored, for: session)
            noteGiven(stored, to: session)
            push(stored, to: session)
            return
        }
        sendOrQueue(outbound, to: session)
    }

    /// A plain QoS 2 delivery of a stored message enters a stored session's flow: remembered
    /// (`Session.givenQoS2`), so another row of the same message is kept back (`PeerRouting`).
    private func noteGiven(_ outbound: OutboundMessage, to session: Session) {
        if session.isStored, let key = outbound.onceKey { session.givenQoS2[key] = broker.clock.now() }
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
        min(connection.clientReceiveMaximum, broker.configuration.maxInflight)
    }

    /// Appends to the queue, making room by the configured policy; every drop is counted and
    /// logged.
    private func push(_ outbound: OutboundMessage, to session: Session) {
        guard session.queue.count >= broker.configuration.maxQueuedMessages else {
            session.queue.append(outbound)
            return
        }
        // Full: the oldest QoS 0 message goes first; then the policy decides.
        let dropped: OutboundMessage
        if let qos0 = session.queue.removeOldestQoS0() {
            dropped = qos0
            session.queue.append(outbound)
        } else if broker.configuration.queueFullPolicy == .dropOldest {
            dropped = session.queue.removeFirst()
            session.queue.append(outbound)
        } else {
            dropped = outbound
        }
        if let sequence = dropped.sequence {
            broker.forgetDelivery(sequence, of: session)
        }
        broker.countDrops(1, reason: "queue of \(session.clientID) is full (\(broker.configuration.maxQueuedMessages) messages)")
    }

    /// Sends queued messages while the flow allows.
    func pump(_ session: Session) {
        guard let connection = session.connection, connection.state == .connected else { return }
        let now = broker.clock.now()
        let window = window(of: connection)
        while let next = session.queue.first {
            if let sequence = next.sequence, !next.committed, sequence > session.durableSequence { return }  // not committed yet
            if next.message.isExpired(at: now) {  // [MQTT-3.3.2-5]
                session.queue.removeFirst()
                if let sequence = next.sequence {
                    broker.forgetDelivery(sequence, of: session)
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
        let start = broker.writes.count
        broker.writes.append(.updateDelivery(clientID: session.clientID, sequence: sequence, state: .sent, packetID: id))
        guard outbound.qos == .exactlyOnce else { return publishInflight(id, of: session, on: connection) }
        // [MQTT-4.3.3] A QoS 2 PUBLISH goes out once its packet id is durable with the row. The
        // client holds the message under that id until the PUBREL; a holder that did not know
        // the id (this node restarted, or another node took the session over) could give it to
        // another message, which the client would take for a duplicate of the first. Committed
        // only to the spool, it waits for the replay, as the PUBREL does (`pubRec`). In a
        // cluster the row is fenced by the session's claim (G4): a node that lost the session
        // while it could not tell (its links cut, frozen) sends no PUBLISH under an id the new
        // holder does not know, and lets the session go (`Broker.connectionFenced`).
        let fence = broker.fenceCollected(from: start, for: connection)
        broker.commitCollected(fence: fence) { [self] in
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

    /// Encodes and broker.writes one PUBLISH to a client.
    /// - Returns: false when the message is too large for the client and was dropped
    ///   [MQTT-3.1.2-25].
    @discardableResult
    func sendPublish(_ outbound: OutboundMessage, packetID: UInt16?, dup: Bool, on connection: Connection) -> Bool {
        let message = outbound.message
        var properties = message.properties
        let now = broker.clock.now()
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
            broker.countDrops(1, reason: "message on \(message.topic) exceeds the Maximum Packet Size of \(connection.clientID)")
            return false
        }
        broker.send(packet, on: connection)
        broker.stats.publishSent += 1
        return true
    }

    // MARK: The client's acknowledgements of deliveries

    func pubAck(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session, let entry = session.inflight[ack.packetID],
            entry.outbound.qos == .atLeastOnce
        else { return }
        finishInflight(ack.packetID, in: session)
    }

    func pubRec(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session else { return }
        guard var entry = session.inflight[ack.packetID], entry.outbound.qos == .exactlyOnce else {
            // [MQTT-4.3.3] Unknown id: answer PUBREL 0x92 so the client can finish.
            let reason: MQTTReasonCode = connection.version == .v5 ? .packetIdentifierNotFound : .success
            broker.durably([]) { [broker] in broker.send(.pubrel(MQTTAck(packetID: ack.packetID, reasonCode: reason)), on: connection) }
            return
        }
        if !ack.reasonCode.isSuccess {
            // A failure PUBREC ends the flow [MQTT-4.3.3-4 note].
            finishInflight(ack.packetID, in: session)
            return
        }
        entry.stage = .released
        session.inflight[ack.packetID] = entry
        let start = broker.writes.count
        if let sequence = entry.outbound.sequence {
            broker.writes.append(.updateDelivery(clientID: session.clientID, sequence: sequence, state: .released, packetID: ack.packetID))
        }
        // PUBREL once "released" is durable, so a restart never re-sends the PUBLISH [MQTT-4.3.3-4].
        // Fenced by the session's claim (G4): a node that lost the session meanwhile sends no
        // PUBREL (the client would take the new holder's PUBLISH, which read "sent", for a new
        // message); the client keeps the message unreleased until the new holder completes it.
        let fence = broker.fenceCollected(from: start, for: connection)
        broker.commitCollected(fence: fence) { [self] in
            if withholdsReleases(of: session) {
                session.withheldReleases.append(ack.packetID)
            } else {
                broker.send(.pubrel(MQTTAck(packetID: ack.packetID)), on: connection)
            }
        }
    }

    func pubComp(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session, let entry = session.inflight[ack.packetID],
            entry.stage == .released
        else { return }
        finishInflight(ack.packetID, in: session)
    }

    func finishInflight(_ id: UInt16, in session: Session) {
        if let sequence = session.inflight[id]?.outbound.sequence {
            broker.forgetDelivery(sequence, of: session)
        }
        session.inflight[id] = nil
        if session.inflightOrder.first == id {
            session.inflightOrder.removeFirst()
        } else if let position = session.inflightOrder.firstIndex(of: id) {
            session.inflightOrder.remove(at: position)
        }
        pump(session)
    }
}

// MARK: QoS 2 deliveries while the store is this node's spool

extension OutboundFlow {
    /// In a cluster, a stored session's PUBREL waits while this node's writes go to its spool
    /// (spooling or replaying): the "released" state is then only here, and a node that takes
    /// the session over meanwhile reads it as sent and sends the PUBLISH again — which a client
    /// that already had the PUBREL takes for a new message (QoS 2 twice). Withheld, the client
    /// holds the message unreleased; the new holder's PUBLISH (the same packet id, DUP) or a
    /// PUBREL sent here once the spool is replayed completes it, once.
    func withholdsReleases(of session: Session) -> Bool {
        broker.cluster != nil && session.isStored && (broker.storeSpooling || broker.storeReplaying)
    }

    /// The spool is replayed (the "sent" and "released" states are in the shared store): the
    /// withheld QoS 2 PUBLISH and PUBREL packets go out, to sessions still held here and connected.
    func releaseWithheld() {
        for session in broker.sessions.values where !session.withheldReleases.isEmpty || !session.withheldPublishes.isEmpty {
            let (publishes, releases) = (session.withheldPublishes, session.withheldReleases)
            session.withheldPublishes.removeAll()
            session.withheldReleases.removeAll()
            guard let connection = session.connection, connection.state == .connected else { continue }
            for id in publishes { publishInflight(id, of: session, on: connection) }
            for id in releases where session.inflight[id]?.stage == .released {
                broker.send(.pubrel(MQTTAck(packetID: id)), on: connection)
            }
        }
        broker.flush()
    }
}
