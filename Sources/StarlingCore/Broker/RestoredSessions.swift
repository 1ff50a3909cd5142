import NIOCore

/// Sessions rebuilt from the store's rows — all of them at start-up, or one claimed from the
/// store in a cluster — with their subscriptions, queues, in-flight messages and inbound QoS 2
/// entries. A pure step: the broker adds the result to its own state (`StateRestore.restoreSessions`).
struct RestoredSessions {
    var sessions: [Session] = []
    /// Inbound QoS 2 entries of clients without a session in the rows (the ingest bridge's, for
    /// sessions that are not stored).
    var otherQoS2: [(clientID: String, packetID: UInt16)] = []
    /// The largest message id the rows name.
    var maxMessageID: Int64 = 0
    /// Rows that give a session a QoS 2 message a lower row already gives it (a batch in doubt
    /// committed and replayed under another sequence): not restored; the broker deletes them.
    var secondRows: [(clientID: String, sequence: Int64)] = []

    /// `now`: the restore's time. Sessions whose rows say connected lost their connection with
    /// the node that held them: they expire and their wills are due from now.
    init(_ state: StoredState, now: NIODeadline, clock: any BrokerClock) {
        var byID: [String: Session] = [:]
        for stored in state.sessions {
            let session = Self.session(stored, now: now, clock: clock)
            byID[stored.clientID] = session
            sessions.append(session)
        }
        for stored in state.subscriptions {
            byID[stored.clientID]?.subscriptions[stored.subscription.filter.raw] = stored.subscription
        }
        let messages = Dictionary(state.messages.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for delivery in state.deliveries {
            maxMessageID = max(maxMessageID, delivery.messageID)
            guard let session = byID[delivery.clientID], let stored = messages[delivery.messageID] else { continue }
            guard Self.add(delivery, of: Message(stored, clock: clock), to: session, now: now) else {
                secondRows.append((delivery.clientID, delivery.sequence))
                continue
            }
        }
        for (clientID, packetID) in state.inboundQoS2 {
            if let session = byID[clientID] { session.inboundQoS2.insert(packetID) } else { otherQoS2.append((clientID, packetID)) }
        }
    }

    private static func session(_ stored: StoredSession, now: NIODeadline, clock: any BrokerClock) -> Session {
        let session = Session(clientID: stored.clientID, version: stored.version, expiryInterval: stored.expiryInterval)
        session.isStored = true
        session.claimEpoch = stored.epoch
        session.username = stored.username
        session.will = stored.will
        if stored.connected {
            // The connection ended with its node: as an abnormal close now.
            if stored.expiryInterval != .max { session.expiresAt = now + .seconds(Int64(stored.expiryInterval)) }
            if let will = stored.will {
                let delay = stored.version == .v5 ? will.properties.willDelayInterval ?? 0 : 0
                session.willDueAt = now + .seconds(Int64(delay))
            }
        } else {
            session.expiresAt = stored.expiresAt.map { clock.deadline(ofWallClock: $0) }
            session.willDueAt = stored.willDueAt.map { clock.deadline(ofWallClock: $0) }
            if session.willDueAt == nil && stored.will != nil { session.will = nil }
        }
        return session
    }

    /// A queued or in-flight delivery, in the state its row says; remembered as read from the
    /// store (a peer's late copy of it is not delivered again). False for a second row of a QoS 2
    /// message the session already has (`OutboundMessage.onceKey`) [MQTT-4.3.3].
    private static func add(_ delivery: StoredDelivery, of message: Message, to session: Session, now: NIODeadline) -> Bool {
        let outbound = OutboundMessage(
            message: message, qos: delivery.qos, retain: delivery.retain,
            subscriptionIdentifiers: delivery.subscriptionIdentifiers, shareGroup: delivery.shareGroup,
            sequence: delivery.sequence, committed: true)
        session.nextSequence = max(session.nextSequence, delivery.sequence + 1)
        session.readFromStore[delivery.sequence] = now
        if let key = outbound.onceKey {
            guard session.givenQoS2[key] == nil else { return false }
            session.givenQoS2[key] = now
        }
        switch delivery.state {
        case .queued:
            session.queue.append(outbound)
        case .sent, .released:
            guard let id = delivery.packetID else {
                session.queue.append(outbound)
                return true
            }
            session.inflight[id] = InflightMessage(outbound: outbound, stage: delivery.state == .sent ? .published : .released)
            session.inflightOrder.append(id)
            session.nextPacketID = id == .max ? 1 : id + 1
        }
        return true
    }
}

extension Message {
    /// A message as the store keeps it, its expiry on `clock`.
    init(_ stored: StoredMessage, clock: any BrokerClock) {
        self.init(
            topic: stored.topic, payload: stored.payload, qos: stored.qos, retain: stored.retain,
            properties: stored.properties, expiresAt: stored.expiresAt.map { clock.deadline(ofWallClock: $0) },
            publisher: stored.publisher)
        storeID = stored.id
    }
}
