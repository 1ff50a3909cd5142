import MQTTCodec
import NIOCore

/// The session directory (docs/architecture.md, "Sessions across nodes"; G1 across nodes): every node knows the stored
/// sessions the other nodes hold (or that no node holds), with their subscriptions, so the node
/// that receives a PUBLISH commits the queue rows of every matching stored session before its
/// PUBACK, and then hands each copy to the node holding the session.
extension Broker {
    // MARK: What peers say

    /// Entries from a peer (or from the store at start-up). Sessions this node holds are its
    /// own business — unless the peer holds one by a later claim, which did not reach this node
    /// (no link to it then): the session is let go as if the claim had come (its client gets
    /// DISCONNECT 0x8E), when the link is back and the peer's directory arrives.
    public func directoryChanged(_ entries: [SessionDirectoryEntry]) {
        for entry in entries {
            if let held = sessions[entry.clientID] {
                // Held by a claim (a session started without one, during a database outage, is
                // not weighed against older entries).
                if entry.subscriptions != nil, let owner = entry.owner, owner != nodeName, held.claimEpoch > 0,
                    entry.epoch > held.claimEpoch
                {
                    sessionClaimedElsewhere(entry.clientID, by: owner, epoch: entry.epoch) {}
                } else if held.isStored {
                    continue
                }
            }
            directory.set(entry)
        }
    }

    /// `owner`'s full set of stored sessions (sent when its link comes up): sessions it no longer
    /// lists are no longer its.
    public func directoryReplaced(owner: String, entries: [SessionDirectoryEntry]) {
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
        guard cluster != nil else { return }
        directory.changedHere.insert(session.clientID)
    }

    /// The entries of this event's changes (announced with the routes).
    func takeDirectoryChanges() -> [SessionDirectoryEntry] {
        defer { directory.changedHere.removeAll() }
        return directory.changedHere.map { clientID in
            let session = sessions[clientID].flatMap { $0.isStored ? $0 : nil }
            return SessionDirectoryEntry(
                clientID: clientID, owner: nodeName,
                subscriptions: session.map { Array($0.subscriptions.values) }, epoch: session?.claimEpoch ?? 0)
        }
    }

    /// Every stored session of this node (sent in full when a link to a peer comes up).
    public var localDirectory: [SessionDirectoryEntry] {
        sessions.values.filter(\.isStored).map {
            SessionDirectoryEntry(
                clientID: $0.clientID, owner: nodeName, subscriptions: Array($0.subscriptions.values), epoch: $0.claimEpoch)
        }
    }

    var nodeName: String { configuration.ingest.nodeID }

    // MARK: Routing to other nodes' stored sessions

    /// The copies of `message` for stored sessions held elsewhere, by holding node ("" for
    /// sessions no node holds): QoS 1/2 copies get their rows in `collected` (committed before
    /// the publisher's acknowledgement), with sequences from this node's id block.
    func routeToDirectory(_ message: Message) -> [String: [RemoteDelivery]] {
        let grouped = directory.matches(message.topic)
        guard !grouped.isEmpty else { return [:] }
        var copies: [String: [RemoteDelivery]] = [:]
        var stored = message  // its payload is saved with the first row
        for (clientID, subscriptions) in grouped {
            guard let entry = directory[clientID],
                let (qos, retain, identifiers) = Self.copy(of: message, for: clientID, through: subscriptions)
            else { continue }
            var delivery = RemoteDelivery(
                clientID: clientID, sequence: nil, messageID: nil, qos: qos, retain: retain,
                subscriptionIdentifiers: identifiers)
            if qos != .atMostOnce {
                let sequence = nextID()
                saveQueueRow(
                    for: clientID, sequence: sequence, message: &stored, qos: qos, retain: retain,
                    subscriptionIdentifiers: identifiers, shareGroup: nil)
                delivery.sequence = sequence
                delivery.messageID = stored.storeID
            } else if entry.owner == nil && takeover.claiming[clientID] == nil {
                continue  // QoS 0 is not kept for a session whose client is away
            }
            // A session this node is taking over gets its copy here, once its row is committed.
            copies[takeover.claiming[clientID] != nil ? nodeName : entry.owner ?? "", default: []].append(delivery)
        }
        return copies
    }

    /// Copies a peer sends for this node's stored sessions (their rows are committed): queued
    /// or sent as if routed here. A session that moved on meanwhile gets its rows from the store.
    func deliverFromPeer(_ message: Message, _ deliveries: [RemoteDelivery]) {
        for delivery in deliveries {
            if takeover.claiming[delivery.clientID] != nil {
                takeover.claiming[delivery.clientID]?.copies.append((message, delivery))
                continue
            }
            guard let session = sessions[delivery.clientID], session.isStored else { continue }
            // Already read from the store (a pickup, a claim, a start-up) or ended: the copy came late.
            if let sequence = delivery.sequence, session.readFromStore[sequence] != nil || session.ended.contains(sequence) { continue }
            guard isReadable(message.topic, by: delivery.clientID) else {
                if let sequence = delivery.sequence { forgetDelivery(sequence, of: session) }
                continue
            }
            var copy = message
            copy.storeID = delivery.messageID
            let outbound = OutboundMessage(
                message: copy, qos: delivery.qos, retain: delivery.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers, shareGroup: nil,
                sequence: delivery.sequence, committed: true)
            sendOrQueue(outbound, to: session)
        }
    }

    /// The copies that came for a session while this node took it over, now that it is read:
    /// those whose rows the read already brought are not delivered twice.
    func applyClaimBuffer(_ buffered: [(message: Message, delivery: RemoteDelivery)], to clientID: String) {
        guard let session = sessions[clientID], session.isStored, !buffered.isEmpty else { return }
        var known = Set(session.queue.compactMap(\.sequence))
        known.formUnion(session.inflight.values.compactMap(\.outbound.sequence))
        for (message, delivery) in buffered where delivery.sequence.map({ !known.contains($0) }) ?? true {
            deliverFromPeer(message, [delivery])
        }
    }
}
