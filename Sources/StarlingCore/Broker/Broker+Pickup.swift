import MQTTCodec
import NIOCore

/// Rows peers committed for this node's connected stored sessions whose copies never came (G7,
/// docs/architecture.md "Cluster"). A publishing node commits the queue rows of every stored
/// session that matches, wherever it is held (G1), then forwards the copies to the holder; a
/// link cut at that moment, or a peer that dies between its commit and its forward, leaves rows
/// in the store that the holder never hears of while its client stays connected. The cluster
/// runs a pickup when a link comes up and every few seconds: every write of this node is
/// committed first, then the rows of its connected stored sessions are read, and those it does
/// not hold in memory are delivered.
extension Broker {
    /// Starts a pickup: `read` gets the client ids to read rows of, once every write submitted
    /// so far is committed (a delivery that ended before has its row deleted by then).
    public func beginPickup(_ read: @escaping ([String]) -> Void) {
        // Not while this node's own writes go to its spool: the store does not have them yet
        // (a delivery that ended would look undelivered).
        guard !storeSpooling && !storeReplaying else { return }
        let clientIDs = sessions.values.filter { $0.isStored && $0.connection != nil }.map(\.clientID)
        guard !clientIDs.isEmpty else { return }
        pickupsInFlight += 1
        durably([]) { read(clientIDs) }
    }

    /// The rows a pickup read (or nothing, when the read failed): those of connected stored
    /// sessions that this node does not hold are delivered, in sequence order.
    public func finishPickup(messages: [StoredMessage], deliveries: [StoredDelivery]) {
        pickupsInFlight -= 1
        let now = clock.now()
        let payloads = Dictionary(messages.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var delivered = 0
        for (clientID, rows) in Dictionary(grouping: deliveries, by: \.clientID) {
            guard let session = sessions[clientID], session.isStored, session.connection != nil else { continue }
            var known = Set(session.queue.compactMap(\.sequence))
            known.formUnion(session.inflight.values.compactMap(\.outbound.sequence))
            known.formUnion(session.endedDuringPickup)
            for row in rows.sorted(by: { $0.sequence < $1.sequence })
            where !known.contains(row.sequence) && session.readFromStore[row.sequence] == nil && !session.ended.contains(row.sequence) {
                guard let payload = payloads[row.messageID] else { continue }
                var copy = message(payload)
                copy.storeID = payload.id
                let outbound = OutboundMessage(
                    message: copy, qos: row.qos, retain: row.retain,
                    subscriptionIdentifiers: row.subscriptionIdentifiers, shareGroup: row.shareGroup,
                    sequence: row.sequence, committed: true)
                session.readFromStore[row.sequence] = now
                sendOrQueue(outbound, to: session)
                delivered += 1
            }
        }
        if pickupsInFlight == 0 {
            for session in sessions.values where !session.endedDuringPickup.isEmpty { session.endedDuringPickup.removeAll() }
        }
        if delivered > 0 {
            stats.pickedUp += UInt64(delivered)
            logger.warning("delivered \(delivered) message(s) that peers committed for sessions held here but whose copies never arrived")
        }
        flush()
    }

    /// A delivery of `session` ended (acknowledged, dropped, expired): its row is deleted.
    func forgetDelivery(_ sequence: Int64, of session: Session) {
        collected.append(.deleteDelivery(clientID: session.clientID, sequence: sequence))
        session.ended.insert(sequence)
        if pickupsInFlight > 0 { session.endedDuringPickup.insert(sequence) }
    }

    /// Forgets, every ten seconds, the rows read from the store more than a minute ago: a peer's
    /// late copy comes within its link's wait (`ClusterRouter.linkWait`); a minute is far beyond it.
    func pruneReadFromStore(now: NIODeadline) {
        guard now - lastReadFromStorePrune >= .seconds(10) else { return }
        lastReadFromStorePrune = now
        for session in sessions.values where !session.readFromStore.isEmpty {
            session.readFromStore = session.readFromStore.filter { now - $0.value < .seconds(60) }
        }
    }
}
