import MQTTCodec
import NIOCore

/// The rows the broker writes, built from its state: a session's row, a queued delivery (its
/// payload once per message), a retained message. One of the broker's parts (`Broker.rows`),
/// confined to its event loop like the broker.
final class StoreRows {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    /// The row of a session.
    func storedSession(_ session: Session) -> StoredSession {
        var stored = StoredSession(
            clientID: session.clientID, version: session.version, expiryInterval: session.expiryInterval,
            expiresAt: session.expiresAt.map { broker.clock.wallClock(of: $0) }, connected: session.connection != nil,
            username: session.username, will: session.will, willDueAt: session.willDueAt.map { broker.clock.wallClock(of: $0) })
        stored.epoch = session.claimEpoch
        return stored
    }

    /// Writes the session row if the session is persistent, or deletes it if it no longer is.
    func sessionRowOperations(_ session: Session) -> [StoreOperation] {
        guard broker.persistence != nil else { return [] }
        if session.isPersistent {
            if !session.isStored { broker.peers.markDirectoryChange(session) }
            session.isStored = true
            return [.saveSession(storedSession(session))]
        }
        if session.isStored {
            session.isStored = false
            broker.peers.markDirectoryChange(session)
            return [.deleteSession(clientID: session.clientID)]
        }
        return []
    }

    /// Queues a QoS 1/2 message for a stored session: the payload is saved once per message,
    /// the delivery row per session; it is sent once committed.
    func storeDelivery(_ outbound: inout OutboundMessage, for session: Session) {
        // In a cluster other nodes write rows for this session too: every sequence comes from
        // this node's id block, so none collides with theirs.
        let sequence: Int64
        if broker.cluster != nil {
            sequence = broker.nextID()
        } else {
            sequence = session.nextSequence
            session.nextSequence += 1
        }
        outbound.sequence = sequence
        saveQueueRow(
            for: session.clientID, sequence: sequence, message: &outbound.message, qos: outbound.qos, retain: outbound.retain,
            subscriptionIdentifiers: outbound.subscriptionIdentifiers, shareGroup: outbound.shareGroup)
        broker.writes.awaitCommit(of: session, sequence: sequence)
    }

    /// Collects the queue row of one copy of `message` for `clientID`, saving its payload first
    /// when it has none yet (`storeID`): the payload is stored once per message, the row per
    /// session.
    func saveQueueRow(
        for clientID: String, sequence: Int64, message: inout Message, qos: MQTTQoS, retain: Bool,
        subscriptionIdentifiers: [Int], shareGroup: ShareGroupKey?
    ) {
        let messageID: Int64
        if let stored = message.storeID {
            messageID = stored
        } else {
            messageID = broker.nextID()
            message.storeID = messageID
            broker.writes.append(.saveMessage(storedMessage(message, id: messageID)))
        }
        broker.writes.append(
            .saveDelivery(
                StoredDelivery(
                    clientID: clientID, sequence: sequence, messageID: messageID, qos: qos, retain: retain,
                    subscriptionIdentifiers: subscriptionIdentifiers, shareGroup: shareGroup, state: .queued, packetID: nil)))
    }

    /// Sets (or with an empty payload deletes) a retained message, durably unless it is a
    /// `$SYS` value (those are rebuilt every interval).
    func retain(_ message: Message) {
        broker.retained.set(message)
        guard broker.persistence != nil, !message.topic.hasPrefix("$SYS/") else { return }
        broker.writes.append(.setRetained(storedMessage(message, id: broker.writes.nextID())))
    }

    func storedMessage(_ message: Message, id: Int64) -> StoredMessage {
        StoredMessage(
            id: id, topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain,
            properties: message.properties, expiresAt: message.expiresAt.map { broker.clock.wallClock(of: $0) },
            publisher: message.publisher)
    }

    func message(_ stored: StoredMessage) -> Message { Message(stored, clock: broker.clock) }
}
