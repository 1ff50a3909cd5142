import Foundation
import GRDB
import NIOCore
import StarlingCore

extension SQLiteStore {
    /// Writes the ingest records of a batch by the rule of docs/architecture.md, "The ingest bridge". SQLite runs one
    /// write transaction at a time, so the look-up and the insert are atomic.
    static func writeIngest(_ records: [IngestRecord], _ db: Database) throws {
        for round in IngestRecord.rounds(records) {
            for record in round {
                switch record.dedup {
                case .none:
                    if record.mayBeStored,
                        try Bool.fetchOne(
                            db.cachedStatement(
                                sql: """
                                    SELECT 1 FROM messages WHERE client_id = ? AND received_at = ? AND topic = ? AND content_hash = ?
                                    """),
                            arguments: [
                                record.clientID, IngestText.sqliteTimestamp(record.receivedAt), record.topic,
                                Data(record.contentHash)
                            ]) != nil
                    {
                        continue  // the batch in flight at the switch had committed
                    }
                case .qos1(let dup, _):
                    if try isDuplicateOfLastEntry(record, db) { continue }
                    try recordLastEntry(record, dup: dup, db)
                case .qos2:
                    if record.replayed, try isDuplicateOfLastEntry(record, db) { continue }
                    try db.cachedStatement(sql: "INSERT INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?) ON CONFLICT DO NOTHING")
                        .execute(arguments: [record.clientID, Int(record.packetID ?? 0)])
                    if db.changesCount == 0 { continue }  // the entry of an earlier copy exists: a re-send
                    try recordLastEntry(record, dup: false, db)
                }
                try db.cachedStatement(
                    sql: """
                        INSERT INTO messages (received_at, client_id, username, packet_id, topic, payload, payload_json, qos, retain,
                            content_type, user_properties, content_hash, node_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    IngestText.sqliteTimestamp(record.receivedAt), record.clientID, record.username, record.packetID.map { Int($0) },
                    record.topic, Data(record.payload.readableBytesView), IngestText.json(record.payload), Int(record.qos), record.retain,
                    record.contentType, IngestText.userProperties(record.userProperties), Data(record.contentHash), record.nodeID
                ])
            }
        }
    }

    /// The rule of `IngestRecord.isDuplicate` against the last entry of the record's key.
    private static func isDuplicateOfLastEntry(_ record: IngestRecord, _ db: Database) throws -> Bool {
        let last = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT content_hash, received_at FROM ingest_dedup WHERE client_id = ? AND packet_id = ?"),
            arguments: [record.clientID, Int(record.packetID ?? 0)])
        guard let last else { return false }
        return record.isDuplicate(ofLast: Array(last["content_hash"] as Data), receivedAt: last["received_at"])
    }

    /// Makes the record the last entry of its key.
    private static func recordLastEntry(_ record: IngestRecord, dup: Bool, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO ingest_dedup (client_id, packet_id, content_hash, last_dup, received_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (client_id, packet_id) DO UPDATE SET content_hash = excluded.content_hash,
                    last_dup = excluded.last_dup, received_at = excluded.received_at
                """
        ).execute(arguments: [record.clientID, Int(record.packetID ?? 0), Data(record.contentHash), dup, record.receivedAt])
    }

    public func enforceRetention(before cutoff: Int64?, now _: Int64) async throws -> Int {
        guard let cutoff else { return 0 }
        let bound = IngestText.sqliteTimestamp(cutoff)
        var total = 0
        // Small batches, so the writer is never held for long.
        while true {
            let deleted = try await pool.write { db in
                try db.execute(
                    sql: """
                        DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE received_at < ? ORDER BY received_at LIMIT 5000)
                        """, arguments: [bound])
                return db.changesCount
            }
            total += deleted
            if deleted < 5000 { break }
        }
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM ingest_dedup WHERE received_at < ?", arguments: [cutoff])
        }
        return total
    }
}
