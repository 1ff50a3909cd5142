import Foundation
import Logging
import MQTTCodec
import NIOCore
import PostgresNIO
import StarlingCore

/// The statements that write a folded batch (`StoreBatch`) on one connection, shared by the
/// store's live path (`PostgresStore.apply`, `commit`) and the spool's replay
/// (`PostgresReplayLine`): one statement per table, in the order foreign keys need.
enum PostgresWrites {
    static func write(_ batch: StoreBatch, on connection: PostgresConnection, owner: String?, logger: Logger) async throws {
        try await writeSessions(batch, owner: owner, on: connection, logger: logger)
        try await writeSubscriptions(batch, on: connection, logger: logger)
        // Ingest first: in a replayed batch it decides which messages another node took already
        // (`takenElsewhere`), and those are not queued for subscribers a second time.
        // Ingest before inbound QoS 2 entries: a QoS 2 row is stored with its entry.
        let taken = takenElsewhere(batch, duplicates: try await writeIngest(batch.ingest, on: connection, logger: logger))
        try await writeQueued(batch, leavingOut: taken.messages, on: connection, logger: logger)
        try await writeInbound(batch, leavingOut: taken.entries, on: connection, logger: logger)
        try await writeRetained(batch, on: connection, logger: logger)
        if let owner { try await writeConnectionWills(batch, owner: owner, on: connection, logger: logger) }
        for (spool, through) in batch.replayMarks {
            try await connection.query(
                """
                INSERT INTO spool_replays (spool_id, through, node_id) VALUES (\(spool), \(through), \(owner))
                ON CONFLICT (spool_id) DO UPDATE SET through = greatest(spool_replays.through, excluded.through), replayed_at = now()
                """, logger: logger)
        }
    }

    /// Sessions reset (deleted first) and session rows, each kept only by a claim as recent.
    private static func writeSessions(_ batch: StoreBatch, owner: String?, on connection: PostgresConnection, logger: Logger)
        async throws
    {
        if !batch.resetSessions.isEmpty {
            // In a cluster only the owner's deletes count: a session another node claimed meanwhile
            // is its own now.
            try await connection.query(
                """
                DELETE FROM sessions WHERE client_id = ANY(\(batch.resetSessions))
                    AND (owner_node IS NULL OR \(owner)::text IS NULL OR owner_node = \(owner)::text)
                """, logger: logger)
            // Nor do its QoS 2 entries go while another node holds the session.
            try await connection.query(
                """
                DELETE FROM inbound_qos2 q WHERE client_id = ANY(\(batch.resetSessions))
                    AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = q.client_id)
                """, logger: logger)
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for s in batch.sessions.values {
            let will = s.will
            try await connection.query(
                """
                INSERT INTO sessions (client_id, protocol_version, expiry_interval, expires_at, connected, username,
                    will_topic, will_payload, will_qos, will_retain, will_properties, will_due_at, updated_at, owner_node, claim_epoch)
                VALUES (\(s.clientID), \(Int16(s.version.rawValue)), \(Int64(s.expiryInterval)), \(s.expiresAt), \(s.connected), \(s.username),
                    \(will?.topic), \(will?.payload), \(will.map { Int16($0.qos.rawValue) }), \(will?.retain),
                    \(will.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) }), \(s.willDueAt), \(now), \(owner), \(s.epoch))
                ON CONFLICT (client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
                    expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at, connected = excluded.connected,
                    username = excluded.username, will_topic = excluded.will_topic, will_payload = excluded.will_payload,
                    will_qos = excluded.will_qos, will_retain = excluded.will_retain, will_properties = excluded.will_properties,
                    will_due_at = excluded.will_due_at, updated_at = excluded.updated_at, owner_node = excluded.owner_node,
                    claim_epoch = excluded.claim_epoch
                WHERE sessions.claim_epoch < excluded.claim_epoch
                    OR (sessions.claim_epoch = excluded.claim_epoch
                        AND (sessions.owner_node IS NULL OR excluded.owner_node IS NULL OR sessions.owner_node = excluded.owner_node))
                """, logger: logger)
        }
    }

    private static func writeSubscriptions(_ batch: StoreBatch, on connection: PostgresConnection, logger: Logger) async throws {
        for (key, change) in batch.subscriptions {
            switch change {
            case .upsert(let stored):
                let sub = stored.subscription
                try await connection.query(
                    """
                    INSERT INTO subscriptions (client_id, filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
                    VALUES (\(stored.clientID), \(sub.filter.raw), \(Int16(sub.qos.rawValue)), \(sub.noLocal), \(sub.retainAsPublished),
                            \(Int16(sub.retainHandling.rawValue)), \(sub.identifier.map { Int32(clamping: $0) }))
                    ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
                        retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
                        subscription_id = excluded.subscription_id
                    """, logger: logger)
            case .delete:
                try await connection.query(
                    "DELETE FROM subscriptions WHERE client_id = \(key.clientID) AND filter = \(key.filter)", logger: logger)
            }
        }
    }

    /// Connection wills (migration 0007), rows of this node.
    private static func writeConnectionWills(_ batch: StoreBatch, owner: String, on connection: PostgresConnection, logger: Logger)
        async throws
    {
        var deleted: [Int64] = []
        for (token, change) in batch.connectionWills {
            switch change {
            case .upsert(let w):
                try await connection.query(
                    """
                    INSERT INTO connection_wills (node_id, client_id, token, topic, payload, qos, retain, properties)
                    VALUES (\(owner), \(w.clientID), \(token), \(w.will.topic), \(w.will.payload), \(Int16(w.will.qos.rawValue)),
                            \(w.will.retain), \(ByteBuffer(bytes: StoreCoding.encode(w.will.properties))))
                    ON CONFLICT (node_id, token) DO UPDATE SET topic = excluded.topic, payload = excluded.payload, qos = excluded.qos,
                        retain = excluded.retain, properties = excluded.properties
                    """, logger: logger)
            case .delete:
                deleted.append(token)
            }
        }
        if !deleted.isEmpty {
            try await connection.query("DELETE FROM connection_wills WHERE node_id = \(owner) AND token = ANY(\(deleted))", logger: logger)
        }
    }

    /// The one statement that writes `batch`, when one can: new payloads with their deliveries
    /// and nothing else, or ingest records of a single round and nothing else.
    static func singleStatement(_ batch: StoreBatch) -> PostgresQuery? {
        if batch.resetSessions.isEmpty && batch.sessions.isEmpty && batch.subscriptions.isEmpty && batch.inboundQoS2.isEmpty
            && batch.retained.isEmpty && batch.connectionWills.isEmpty && batch.replayMarks.isEmpty
        {
            if batch.ingest.isEmpty, case let (upserts, updates, deletes) = deliveryChanges(batch), updates.isEmpty, deletes.isEmpty {
                return queuedQuery(Array(batch.messages.values), upserts)
            }
            if batch.messages.isEmpty && batch.deliveries.isEmpty {
                let rounds = IngestRecord.rounds(batch.ingest)
                if rounds.count == 1 { return ingestQuery(rounds[0]) }
            }
        }
        return nil
    }

    private static func deliveryChanges(_ batch: StoreBatch)
        -> (upserts: [StoredDelivery], updates: [(StoreBatch.DeliveryKey, StoredDeliveryState, UInt16?)], deletes: [StoreBatch.DeliveryKey])
    {
        var upserts: [StoredDelivery] = []
        var updates: [(StoreBatch.DeliveryKey, StoredDeliveryState, UInt16?)] = []
        var deletes: [StoreBatch.DeliveryKey] = []
        for (key, change) in batch.deliveries {
            switch change {
            case .upsert(let d): upserts.append(d)
            case .update(let state, let packetID): updates.append((key, state, packetID))
            case .delete: deletes.append(key)
            }
        }
        return (upserts, updates, deletes)
    }

    /// New message payloads and new (or re-saved) deliveries in one statement: there is no
    /// foreign key between the two tables, so their order within the statement does not matter.
    private static func queuedQuery(_ m: [StoredMessage], _ d: [StoredDelivery]) -> PostgresQuery {
        """
        WITH payloads AS (
            INSERT INTO message_payloads (id, topic, payload, qos, retain, properties, expires_at, publisher)
            SELECT id, topic, payload, qos, retain, properties, NULLIF(expires_at, -1), publisher
            FROM unnest(\(m.map(\.id))::int8[], \(m.map(\.topic))::text[], \(m.map(\.payload))::bytea[],
                        \(m.map { Int16($0.qos.rawValue) })::int2[], \(m.map(\.retain))::bool[],
                        \(m.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) })::bytea[],
                        \(m.map { $0.expiresAt ?? -1 })::int8[], \(m.map(\.publisher))::text[])
                AS t(id, topic, payload, qos, retain, properties, expires_at, publisher)
            ON CONFLICT (id) DO NOTHING
        )
        INSERT INTO session_messages (client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id)
        SELECT client_id, seq, message_id, qos, retain, NULLIF(subscription_ids, ''), NULLIF(share_name, ''), NULLIF(share_filter, ''),
               state, NULLIF(packet_id, 0)
        FROM unnest(\(d.map(\.clientID))::text[], \(d.map(\.sequence))::int8[], \(d.map(\.messageID))::int8[],
                    \(d.map { Int16($0.qos.rawValue) })::int2[], \(d.map(\.retain))::bool[],
                    \(d.map { StoreCoding.encode(identifiers: $0.subscriptionIdentifiers) ?? "" })::text[],
                    \(d.map { $0.shareGroup?.name ?? "" })::text[], \(d.map { $0.shareGroup?.filter ?? "" })::text[],
                    \(d.map { Int16($0.state.rawValue) })::int2[], \(d.map { Int32($0.packetID ?? 0) })::int4[])
            AS t(client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id)
        ON CONFLICT (client_id, seq) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id
            WHERE session_messages.state <> 3
        """
    }

    /// The messages of a replayed batch that a node other than this one has already taken from
    /// their publisher, and their QoS 2 entries: a device whose node went silent (cut off,
    /// frozen) while its spool held the message re-sent it elsewhere, that node queued it for
    /// the subscribers, and the replay's ingest found it stored (`duplicates`, of the batch's
    /// replayed records). Queued again, a QoS 2 subscriber would receive it twice (README "What
    /// the cluster promises under faults"). Taken: every payload of the record's fenced group
    /// (`StoreBatch.routedWith`: one per stored session of the node, one for the others'), or,
    /// for a record outside a group, the first payload with its publisher, topic and content;
    /// and its QoS 2 entry, which the node that stored the message may have released already
    /// (entered again, it would hold the packet id for good and swallow the client's next
    /// message under it).
    static func takenElsewhere(_ batch: StoreBatch, duplicates: [IngestRecord]) -> (
        messages: Set<Int64>, entries: Set<StoreBatch.InboundKey>
    ) {
        guard !duplicates.isEmpty else { return ([], []) }
        var wanted: [String: [IngestRecord]] = [:]
        var taken: Set<Int64> = []
        var entries: Set<StoreBatch.InboundKey> = []
        let identity = { (r: IngestRecord) in "\(r.clientID)\u{0}\(r.packetID ?? 0)\u{0}\(r.receivedAt)" }
        let duplicated = Set(duplicates.map(identity))
        for (index, record) in batch.ingest.enumerated() where duplicated.contains(identity(record)) {
            if record.dedup == .qos2, let packetID = record.packetID {
                entries.insert(StoreBatch.InboundKey(clientID: record.clientID, packetID: packetID))
            }
            if let routed = batch.routedWith[index] {
                taken.formUnion(routed)
            } else {
                wanted[record.clientID, default: []].append(record)
            }
        }
        for message in batch.messages.values.sorted(by: { $0.id < $1.id }) where !taken.contains(message.id) {
            guard var records = wanted[message.publisher],
                let index = records.firstIndex(where: { $0.topic == message.topic && $0.payload == message.payload })
            else { continue }
            records.remove(at: index)
            wanted[message.publisher] = records
            taken.insert(message.id)
        }
        return (taken, entries)
    }

    /// Payloads and deliveries (after sessions, which deliveries reference), but for the
    /// messages `leavingOut` names.
    private static func writeQueued(
        _ batch: StoreBatch, leavingOut taken: Set<Int64> = [], on connection: PostgresConnection,
        logger: Logger
    ) async throws {
        var (upserts, updates, deletes) = deliveryChanges(batch)
        var messages = Array(batch.messages.values)
        if !taken.isEmpty {
            messages.removeAll { taken.contains($0.id) }
            upserts.removeAll { taken.contains($0.messageID) }
            logger.info("replay: \(taken.count) messages another node took from their publishers meanwhile are not queued again")
        }
        if !messages.isEmpty || !upserts.isEmpty {
            try await connection.query(queuedQuery(messages, upserts), logger: logger)
        }
        if !updates.isEmpty {
            try await connection.query(
                """
                UPDATE session_messages m SET state = t.state, packet_id = NULLIF(t.packet_id, 0)
                FROM unnest(\(updates.map(\.0.clientID))::text[], \(updates.map(\.0.sequence))::int8[],
                            \(updates.map { Int16($0.1.rawValue) })::int2[], \(updates.map { Int32($0.2 ?? 0) })::int4[])
                    AS t(client_id, seq, state, packet_id)
                WHERE m.client_id = t.client_id AND m.seq = t.seq AND m.state <> 3
                """, logger: logger)
        }
        if !deletes.isEmpty {
            // A delivery whose row is not there (yet: another node's spool holds it, or its
            // commit runs now) leaves the row as ended (state 3), which the row, when it comes,
            // does not overwrite: the primary key orders the two writes (migration 0010).
            try await connection.query(
                """
                WITH t AS (SELECT * FROM unnest(\(deletes.map(\.clientID))::text[], \(deletes.map(\.sequence))::int8[]) AS t(client_id, seq)),
                gone AS (DELETE FROM session_messages m USING t WHERE m.client_id = t.client_id AND m.seq = t.seq AND m.state <> 3
                         RETURNING m.client_id, m.seq)
                INSERT INTO session_messages (client_id, seq, message_id, qos, retain, state, ended_at)
                SELECT t.client_id, t.seq, 0, 0, false, 3, now() FROM t
                WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.client_id = t.client_id AND g.seq = t.seq)
                  AND EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = t.client_id)
                ON CONFLICT (client_id, seq) DO UPDATE SET state = 3, ended_at = now()
                """, logger: logger)
        }
    }

    private static func writeInbound(
        _ batch: StoreBatch, leavingOut taken: Set<StoreBatch.InboundKey> = [], on connection: PostgresConnection, logger: Logger
    ) async throws {
        let adds = batch.inboundQoS2.filter { $0.value && !taken.contains($0.key) }.map(\.key)
        let removes = batch.inboundQoS2.filter { !$0.value }.map(\.key)
        if !adds.isEmpty {
            try await connection.query(
                """
                INSERT INTO inbound_qos2 (client_id, packet_id) SELECT * FROM unnest(\(adds.map(\.clientID))::text[], \(adds.map { Int32($0.packetID) })::int4[])
                ON CONFLICT DO NOTHING
                """, logger: logger)
        }
        if !removes.isEmpty {
            try await connection.query(
                """
                DELETE FROM inbound_qos2 q USING unnest(\(removes.map(\.clientID))::text[], \(removes.map { Int32($0.packetID) })::int4[]) AS t(client_id, packet_id)
                WHERE q.client_id = t.client_id AND q.packet_id = t.packet_id
                """, logger: logger)
        }
    }

    private static func writeRetained(_ batch: StoreBatch, on connection: PostgresConnection, logger: Logger) async throws {
        let sets = batch.retained.values.filter { $0.payload.readableBytes > 0 }
        let deletes = batch.retained.values.filter { $0.payload.readableBytes == 0 }.map(\.topic)
        if !deletes.isEmpty {
            try await connection.query("DELETE FROM retained WHERE topic = ANY(\(deletes))", logger: logger)
        }
        if !sets.isEmpty {
            let m = Array(sets)
            try await connection.query(
                """
                INSERT INTO retained (topic, payload, qos, properties, expires_at, publisher, message_id)
                SELECT topic, payload, qos, properties, NULLIF(expires_at, -1), publisher, message_id
                FROM unnest(\(m.map(\.topic))::text[], \(m.map(\.payload))::bytea[], \(m.map { Int16($0.qos.rawValue) })::int2[],
                            \(m.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) })::bytea[], \(m.map { $0.expiresAt ?? -1 })::int8[],
                            \(m.map(\.publisher))::text[], \(m.map(\.id))::int8[])
                    AS t(topic, payload, qos, properties, expires_at, publisher, message_id)
                ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, properties = excluded.properties,
                    expires_at = excluded.expires_at, publisher = excluded.publisher, message_id = excluded.message_id
                """, logger: logger)
        }
    }

    /// The fences a later claim has overtaken, the sessions' rows locked until the commit, and
    /// those that add a QoS 2 entry (`newInbound`) the store holds already.
    static func staleFences(
        _ fences: Set<SessionFence>, newInbound: [(fence: SessionFence, key: StoreBatch.InboundKey)] = [],
        on connection: PostgresConnection,
        logger: Logger
    ) async throws -> Set<SessionFence> {
        let clients = Array(Set(fences.map(\.clientID))).sorted()
        var rows: [String: (epoch: Int64, claimedAt: Int64?, recent: [Int64])] = [:]
        let result = try await connection.rows(
            """
            SELECT client_id, claim_epoch, claimed_at, recent_claims FROM sessions WHERE client_id = ANY(\(clients)) ORDER BY client_id FOR SHARE
            """, logger: logger)
        for row in result {
            let (clientID, epoch, claimedAt, recent) = try row.decode((String, Int64, Int64?, [Int64]?).self)
            rows[clientID] = (epoch, claimedAt, recent ?? [])
        }
        var stale = fences.filter { fence in
            guard let row = rows[fence.clientID] else { return false }
            // The first claim after the fence's own: a session may have moved on since (migration 0013).
            let first = SessionFence.firstClaim(after: fence.epoch, in: row.recent) ?? row.claimedAt
            return fence.isStale(current: row.epoch, claimedAt: first)
        }
        let candidates = newInbound.filter { !stale.contains($0.fence) }
        guard !candidates.isEmpty else { return stale }
        // QoS 2 entries another node wrote after this node read the session (`newInboundQoS2`).
        var held: Set<StoreBatch.InboundKey> = []
        let existing = try await connection.rows(
            """
            SELECT q.client_id, q.packet_id FROM inbound_qos2 q
            JOIN unnest(\(candidates.map(\.key.clientID))::text[], \(candidates.map { Int32($0.key.packetID) })::int4[]) AS t(client_id, packet_id)
                ON q.client_id = t.client_id AND q.packet_id = t.packet_id
            """, logger: logger)
        for row in existing {
            let (clientID, packetID) = try row.decode((String, Int32).self)
            held.insert(StoreBatch.InboundKey(clientID: clientID, packetID: UInt16(truncatingIfNeeded: packetID)))
        }
        stale.formUnion(StoreOperation.repeatedQoS2(candidates, held: held))
        return stale
    }
}
