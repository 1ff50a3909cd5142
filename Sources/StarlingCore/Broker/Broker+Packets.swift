import MQTTCodec
import NIOCore

extension Broker {
    /// Dispatches a packet of a connected client.
    func handlePacket(_ packet: MQTTPacket, on connection: Connection) {
        switch packet {
        case .connect:
            fail(connection, .protocolError, "a second CONNECT", spec: "MQTT-3.1.0-2")
        case .publish(let publish):
            stats.publishReceived += 1
            handlePublish(publish, on: connection)
        case .puback(let ack):
            handlePubAck(ack, on: connection)
        case .pubrec(let ack):
            handlePubRec(ack, on: connection)
        case .pubrel(let ack):
            handlePubRel(ack, on: connection)
        case .pubcomp(let ack):
            handlePubComp(ack, on: connection)
        case .subscribe(let subscribe):
            handleSubscribe(subscribe, on: connection)
        case .unsubscribe(let unsubscribe):
            handleUnsubscribe(unsubscribe, on: connection)
        case .pingreq:
            durably([]) { self.send(.pingresp, on: connection) }  // [MQTT-3.12.4-1], in order with acks
        case .disconnect(let disconnect):
            handleDisconnect(disconnect, on: connection)
        case .auth(let auth):
            handleAuth(auth, on: connection)
        case .connack, .suback, .unsuback, .pingresp:
            fail(connection, .protocolError, "\(packet.type) is not sent by clients")
        }
    }

    // MARK: PUBLISH from a client

    func handlePublish(_ publish: MQTTPublish, on connection: Connection) {
        guard let session = connection.session else { return }
        let context = PublishCheck.Context(
            version: connection.version, aliases: connection.inboundAliases, inboundQoS2: session.inboundQoS2,
            unacknowledgedQoS1: connection.unacknowledgedQoS1)
        let verdict = PublishCheck.verdict(publish, context, configuration: configuration) { topic in
            authorizer.isAllowed(.publish, topic: topic, clientID: connection.clientID, username: connection.username)
        }
        switch verdict {
        case .accept(let topic, let learnsAlias):
            if let learnsAlias { connection.inboundAliases[learnsAlias] = topic }
            publishAccepted(publish, topic: topic, session: session, on: connection)
        case .disconnect(let reason, let message, let spec):
            fail(connection, reason, message, spec: spec)
        case .refuse(let reason, let message):
            guard let id = publish.packetID else { return }
            durably([]) { self.acknowledge(publish, id: id, reason: reason, message: message, on: connection) }
        case .duplicateQoS2:
            guard let id = publish.packetID else { return }
            durably([]) { self.send(.pubrec(MQTTAck(packetID: id)), on: connection) }
        case .denied(let topic):
            // 5.0 says why; 3.x acknowledges and drops, as it cannot say.
            logger.info("publish denied", metadata: ["mqtt.client_id": "\(connection.clientID)", "topic": "\(topic)"])
            guard let id = publish.packetID else { return }
            if publish.qos == .exactlyOnce && connection.version != .v5 { session.inboundQoS2.insert(id) }
            durably([]) {
                self.acknowledge(publish, id: id, reason: .notAuthorized, message: "not authorized to publish to \(topic)", on: connection)
            }
        }
    }

    /// A PUBLISH that passed the checks: ingested, retained, routed here and to the peers; its
    /// acknowledgement waits for the commit of everything it caused (G1).
    private func publishAccepted(_ publish: MQTTPublish, topic: String, session: Session, on connection: Connection) {
        let now = clock.now()
        let message = Message(publish: publish, topic: topic, publisher: connection.clientID, now: now)
        let firstWrite = writes.count
        ingest(publish, topic: topic, connection: connection)
        if persistence?.isBacklogged == true && !connection.readPauses.contains(.store) {
            // This message is taken; the client's next ones wait in TCP until the store catches up.
            connection.pauseReading(.store)
            pausedForStore.append(connection)
        }
        if publish.retain {
            retain(message)  // [MQTT-3.3.1-5]
            // Peers serve it too: QoS 0 at once; QoS 1/2 before the ack, below.
            if publish.qos == .atMostOnce { cluster?.retainedChanged(message) {} }
        }
        let placement = peers.placeShared(message)
        let routed = route(message, now: now, sharedGroups: placement.selection)
        var routing = AcceptedPublish(message: message, placement: placement, servedGroups: routed.servedGroups, matched: routed.delivered)
        // Other nodes' stored sessions: their rows commit with this message's (G1 across nodes).
        routing.remoteCopies = cluster == nil ? [:] : peers.routeToDirectory(message)
        if let cluster {
            // QoS 0 and 1 go to the peers' clean subscribers now, as to local ones (a QoS 1
            // message may arrive twice if its publisher re-sends it after a crash, as the
            // protocol allows); QoS 2 once committed here, with the PUBREC (it must not arrive
            // twice); copies for stored sessions once their rows are committed.
            let copies = routing.remoteCopies.values.reduce(0) { $0 + $1.count }
            switch publish.qos {
            case .atMostOnce:
                routing.matched += peers.forwardToPeers(
                    message, servedGroups: routing.servedGroups, placed: placement, deliveries: routing.remoteCopies,
                    from: connection)
            case .atLeastOnce:
                routing.matched +=
                    peers.forwardToPeers(
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
            if session.isStored { writes.append(.addInboundQoS2(clientID: session.clientID, packetID: id)) }
        }
        if publish.qos == .atLeastOnce {
            connection.unacknowledgedQoS1 += 1
            // A 3.x client has no Receive Maximum: stop reading from it instead, so what
            // waits for the store stays bounded.
            if connection.version != .v5 && connection.unacknowledgedQoS1 == Int(configuration.receiveMaximum) {
                connection.pauseReading(.acknowledgements)
            }
        }
        let fence = fenceCollected(from: firstWrite, for: connection)
        // G1: PUBACK / PUBREC only once everything the message caused is committed.
        commitCollected(fence: fence) { [self] in committed(publish, id: id, routing, on: connection) }
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
            let undecided = storeSpooling || storeReplaying
            peers.forwardToPeers(
                message, servedGroups: routing.servedGroups, placed: routing.placement, deliveries: undecided ? [:] : routing.remoteCopies,
                groupsCommitted: routing.groupsCommitted)
        } else if publish.qos == .atLeastOnce && !routing.remoteCopies.isEmpty {
            peers.forwardToPeers(message, servedGroups: [], deliveries: routing.remoteCopies, copiesOnly: true)
        }
        if publish.qos == .atLeastOnce {
            connection.unacknowledgedQoS1 -= 1
            if connection.version != .v5 && connection.unacknowledgedQoS1 == Int(configuration.receiveMaximum) - 1 {
                connection.resumeReading(.acknowledgements)
            }
        }
        let reason: MQTTReasonCode = routing.matched == 0 ? .noMatchingSubscribers : .success
        // The ack waits (in order) for the peers serving shared groups to commit their
        // members' rows, and for a retained change to be applied by every linked peer:
        // no window in which a peer serves an older retained value after the ack.
        let retainedOnPeers = publish.retain ? cluster : nil
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
        send(publish.qos == .exactlyOnce ? .pubrec(ack) : .puback(ack), on: connection)
    }

    // MARK: Acknowledgements from a client

    func handlePubAck(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session, let entry = session.inflight[ack.packetID],
            entry.outbound.qos == .atLeastOnce
        else { return }
        finishInflight(ack.packetID, in: session)
    }

    func handlePubRec(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session else { return }
        guard var entry = session.inflight[ack.packetID], entry.outbound.qos == .exactlyOnce else {
            // [MQTT-4.3.3] Unknown id: answer PUBREL 0x92 so the client can finish.
            let reason: MQTTReasonCode = connection.version == .v5 ? .packetIdentifierNotFound : .success
            durably([]) { self.send(.pubrel(MQTTAck(packetID: ack.packetID, reasonCode: reason)), on: connection) }
            return
        }
        if !ack.reasonCode.isSuccess {
            // A failure PUBREC ends the flow [MQTT-4.3.3-4 note].
            finishInflight(ack.packetID, in: session)
            return
        }
        entry.stage = .released
        session.inflight[ack.packetID] = entry
        if let sequence = entry.outbound.sequence {
            writes.append(.updateDelivery(clientID: session.clientID, sequence: sequence, state: .released, packetID: ack.packetID))
        }
        // PUBREL once "released" is durable, so a restart never re-sends the PUBLISH [MQTT-4.3.3-4].
        commitCollected { [self] in
            if withholdsReleases(of: session) {
                session.withheldReleases.append(ack.packetID)
            } else {
                send(.pubrel(MQTTAck(packetID: ack.packetID)), on: connection)
            }
        }
    }

    func handlePubRel(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session else { return }
        let known = session.inboundQoS2.remove(ack.packetID) != nil
        // The store may hold the entry even for a session it does not keep (the ingest bridge
        // writes it with the row), so it is removed whenever there is a store.
        if known && persistence != nil { writes.append(.removeInboundQoS2(clientID: session.clientID, packetID: ack.packetID)) }
        let reason: MQTTReasonCode = known || connection.version != .v5 ? .success : .packetIdentifierNotFound
        // PUBCOMP once the id is durably free: a client may reuse it right after [MQTT-4.3.3-11].
        commitCollected { self.send(.pubcomp(MQTTAck(packetID: ack.packetID, reasonCode: reason)), on: connection) }
    }

    func handlePubComp(_ ack: MQTTAck, on connection: Connection) {
        guard let session = connection.session, let entry = session.inflight[ack.packetID],
            entry.stage == .released
        else { return }
        finishInflight(ack.packetID, in: session)
    }

    func finishInflight(_ id: UInt16, in session: Session) {
        if let sequence = session.inflight[id]?.outbound.sequence {
            forgetDelivery(sequence, of: session)
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

/// An acknowledgement that waits for more than the commit (the peers applying a retained
/// change), and those that came after it: PUBACK/PUBREC stay in the order of the PUBLISH
/// packets [MQTT-4.6.0-2].
final class HeldAcknowledgement {
    var ready: Bool
    let send: () -> Void
    init(ready: Bool, send: @escaping () -> Void) {
        self.ready = ready
        self.send = send
    }
}

final class AcknowledgementChain {
    var entries: [HeldAcknowledgement] = []
}

extension Broker {
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
        flush()
    }
}

/// Where an accepted PUBLISH went, kept until its commit (`Broker.committed`).
struct AcceptedPublish {
    var message: Message
    var placement: SharedPlacement
    var servedGroups: Set<ShareGroupKey>
    /// Subscribers it reached here and on peers (0: "no matching subscribers" in 5.0).
    var matched: Int
    /// Copies for other nodes' stored sessions, by holding node.
    var remoteCopies: [String: [RemoteDelivery]] = [:]
    /// Peers serving shared groups commit their members' rows before the acknowledgement.
    let groupsCommitted = PeerCommits()
}
