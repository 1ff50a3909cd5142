import Foundation
import Logging
import MQTTCodec
import NIOCore
import PostgresNIO
import StarlingCore

/// The ingest bridge's rows (docs/architecture.md, "The ingest bridge").
extension PostgresWrites {
    /// Writes ingest records by the rule of docs/architecture.md, "The ingest bridge" in one statement per round:
    /// QoS 1 rows exist only where the `ingest_dedup` upsert changed the last entry (the
    /// database decides, so a re-send reaching another node at the same moment waits on the row
    /// lock and then sees the first copy); QoS 2 rows only where the `inbound_qos2` entry is new.
    /// Returns the replayed QoS 1 and 2 records that made no row (stored already).
    @discardableResult
    static func writeIngest(_ records: [IngestRecord], on connection: PostgresConnection, logger: Logger) async throws -> [IngestRecord] {
        var duplicates: [IngestRecord] = []
        for round in IngestRecord.rounds(records) where !round.isEmpty {
            let replayed = round.contains { $0.replayed && $0.dedup != .none }
            let rows = try await connection.rows(ingestQuery(round, returning: replayed), logger: logger)
            guard replayed else { continue }
            var stored: Set<String> = []
            for row in rows {
                let (client, packet) = try row.decode((String, Int32?).self)
                stored.insert("\(client)\u{0}\(packet ?? 0)")
            }
            duplicates += round.filter { $0.replayed && $0.dedup != .none && !stored.contains("\($0.clientID)\u{0}\($0.packetID ?? 0)") }
        }
        return duplicates
    }

    /// The statement of one round of ingest records (each de-duplication key once); `returning`:
    /// it answers the (client id, packet id) of every row it stored.
    static func ingestQuery(_ round: [IngestRecord], returning: Bool = false) -> PostgresQuery {
        let kind = round.map { r -> Int16 in
            switch r.dedup {
            case .none: 0;
            case .qos1: 1;
            case .qos2: 2
            }
        }
        let dupish = round.map { r -> Bool in
            if case .qos1(let dup, let contentOnly) = r.dedup { return dup || contentOnly }
            return false
        }
        return """
            WITH input AS (
                SELECT * FROM unnest(\(Array(0..<Int64(round.count)))::int8[], \(round.map(\.receivedAt))::int8[],
                    \(round.map(\.clientID))::text[], \(round.map { $0.username ?? "" })::text[], \(round.map { $0.username != nil })::bool[],
                    \(round.map { Int32($0.packetID ?? 0) })::int4[], \(round.map(\.topic))::text[], \(round.map(\.payload))::bytea[],
                    \(round.map { IngestText.json($0.payload) ?? "" })::text[], \(round.map { Int16($0.qos) })::int2[],
                    \(round.map(\.retain))::bool[], \(round.map { $0.contentType ?? "" })::text[],
                    \(round.map { IngestText.userProperties($0.userProperties) ?? "" })::text[],
                    \(round.map { ByteBuffer(bytes: $0.contentHash) })::bytea[], \(round.map(\.nodeID))::text[],
                    \(kind)::int2[], \(dupish)::bool[], \(round.map(\.replayed))::bool[], \(round.map(\.mayBeStored))::bool[])
                AS t(ord, received_ms, client_id, username, has_username, packet_id, topic, payload, payload_json, qos, retain,
                     content_type, user_properties, content_hash, node_id, kind, dupish, replayed, may_be_stored)
            ),
            q1 AS (
                INSERT INTO ingest_dedup (client_id, packet_id, content_hash, last_dup, received_at, replayed)
                SELECT client_id, packet_id, content_hash, dupish, received_ms, replayed FROM input WHERE kind = 1
                ON CONFLICT (client_id, packet_id) DO UPDATE
                    SET content_hash = excluded.content_hash, last_dup = excluded.last_dup, received_at = excluded.received_at,
                        replayed = excluded.replayed
                    WHERE NOT (ingest_dedup.content_hash = excluded.content_hash
                               AND (excluded.last_dup OR (excluded.replayed AND excluded.received_at <= ingest_dedup.received_at)))
                RETURNING client_id, packet_id
            ),
            d2 AS (
                INSERT INTO ingest_dedup (client_id, packet_id, content_hash, last_dup, received_at, replayed)
                SELECT client_id, packet_id, content_hash, false, received_ms, replayed FROM input WHERE kind = 2
                ON CONFLICT (client_id, packet_id) DO UPDATE
                    SET content_hash = excluded.content_hash, last_dup = false, received_at = excluded.received_at, replayed = excluded.replayed
                    WHERE NOT (ingest_dedup.content_hash = excluded.content_hash
                               AND excluded.replayed AND excluded.received_at <= ingest_dedup.received_at)
                RETURNING client_id, packet_id
            ),
            q2 AS (
                INSERT INTO inbound_qos2 (client_id, packet_id)
                SELECT client_id, packet_id FROM input i
                WHERE kind = 2 AND (NOT i.replayed OR EXISTS (SELECT 1 FROM d2 WHERE d2.client_id = i.client_id AND d2.packet_id = i.packet_id))
                ON CONFLICT DO NOTHING
                RETURNING client_id, packet_id
            )
            INSERT INTO messages (received_at, client_id, username, packet_id, topic, payload, payload_json, qos, retain,
                                  content_type, user_properties, content_hash, node_id)
            SELECT to_timestamp(received_ms / 1000.0), client_id, CASE WHEN has_username THEN username END, NULLIF(packet_id, 0),
                   topic, payload, NULLIF(payload_json, '')::jsonb, qos, retain, NULLIF(content_type, ''),
                   NULLIF(user_properties, '')::jsonb, content_hash, node_id
            FROM input i
            WHERE (i.kind = 0 AND NOT (i.may_be_stored AND EXISTS (
                       SELECT 1 FROM messages m WHERE m.client_id = i.client_id AND m.received_at = to_timestamp(i.received_ms / 1000.0)
                           AND m.topic = i.topic AND m.content_hash = i.content_hash)))
               OR (i.kind = 1 AND EXISTS (SELECT 1 FROM q1 WHERE q1.client_id = i.client_id AND q1.packet_id = i.packet_id))
               OR (i.kind = 2 AND EXISTS (SELECT 1 FROM q2 WHERE q2.client_id = i.client_id AND q2.packet_id = i.packet_id))
            ORDER BY i.ord
            \(unescaped: returning ? "RETURNING client_id, packet_id" : "")
            """
    }
}
