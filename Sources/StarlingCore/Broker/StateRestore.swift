import MQTTCodec
import NIOCore

/// The broker's state read back from the store: everything at start-up, what the store held
/// after a start on the spool, and the sessions a claim reads in a cluster. One of the broker's
/// parts (`Broker.restoring`), confined to its event loop like the broker.
final class StateRestore {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    /// Rebuilds sessions, subscriptions, queues and retained messages from the store, before any
    /// listener accepts. Sessions that were connected when the broker stopped lost their
    /// connection: their wills are due [MQTT-3.1.2-8]; sessions that expired meanwhile end.
    func restore(_ state: StoredState) {
        let now = broker.clock.now()
        let wallNow = broker.clock.wallClockMilliseconds()
        var maxID = restoreSessions(state, now: now)
        for stored in state.retained {
            maxID = max(maxID, stored.id)
            var restored = broker.rows.message(stored)
            restored.retain = true
            broker.retained.set(restored)
        }
        // Message ids grow from the wall clock, so they never repeat across restarts even after
        // garbage collection emptied the table.
        broker.writes.lastID = max(broker.writes.lastID, maxID, wallNow * 1000)
        broker.logger.notice(
            "restored \(state.sessions.count) sessions, \(state.subscriptions.count) subscriptions, \(state.deliveries.count) queued or in-flight messages, \(state.retained.count) retained messages"
        )
        // Wills now due and sessions that expired while the broker was down.
        let crashed = state.sessions.filter(\.connected).map(\.clientID)
        for clientID in crashed {
            if let session = broker.sessions[clientID] { broker.persist(broker.rows.sessionRowOperations(session)) }
        }
        broker.tick()
    }

    /// The store's state, loaded once it answers again after a start on the spool: what this
    /// node did meanwhile wins (sessions it serves, retained messages it set), the rest is
    /// restored as at a start.
    func adoptDeferredState(_ state: StoredState) {
        var state = state
        let held = Set(broker.sessions.keys)
        state.sessions.removeAll { held.contains($0.clientID) }
        state.subscriptions.removeAll { held.contains($0.clientID) }
        state.deliveries.removeAll { held.contains($0.clientID) }
        state.inboundQoS2.removeAll { held.contains($0.clientID) }
        state.retained.removeAll { broker.retained.contains(topic: $0.topic) }
        broker.storeStateDeferred = false
        restore(state)
    }

    /// Rebuilds the sessions of `state` (`RestoredSessions`): all of them at start-up, or one
    /// claimed from the store in a cluster (never one this node holds). Returns the largest
    /// message id seen.
    @discardableResult
    func restoreSessions(_ state: StoredState, now: NIODeadline) -> Int64 {
        let restored = RestoredSessions(state, now: now, clock: broker.clock)
        for session in restored.sessions {
            broker.sessions[session.clientID] = session
            for subscription in session.subscriptions.values {
                broker.index.insert(subscription.filter, subscriber: session.clientID, value: subscription)
                broker.peers.routeAdded(subscription.filter)
            }
        }
        for (clientID, packetID) in restored.otherQoS2 {
            if let session = broker.sessions[clientID] {
                session.inboundQoS2.insert(packetID)
            } else {
                broker.clientsWithStoredQoS2.insert(clientID)
            }
        }
        for (clientID, sequence) in restored.secondRows {
            if let session = broker.sessions[clientID] { broker.forgetDelivery(sequence, of: session) }
        }
        if !restored.secondRows.isEmpty {
            broker.logger.warning(
                "deleted \(restored.secondRows.count) second row(s) of QoS 2 messages their sessions already had [MQTT-4.3.3]")
        }
        return restored.maxMessageID
    }
}
