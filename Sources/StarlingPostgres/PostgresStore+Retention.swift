import Foundation
import Logging
import MQTTCodec
import NIOCore
import PostgresNIO
import StarlingCore

/// The ingest table's partitions and retention.
extension PostgresStore {
    /// Keeps daily partitions of `messages` from yesterday to three days ahead, and drops the
    /// ones wholly before `cutoff` (ingest.retention); rows older than the cutoff in the default
    /// partition are deleted.
    public func enforceRetention(before cutoff: Int64?, now: Int64) async throws -> Int {
        let day: Int64 = 86_400_000
        let today = now / day * day
        for start in stride(from: today - day, through: today + 3 * day, by: Int64.Stride(day)) {
            let name = "messages_\(IngestText.sqliteTimestamp(start).prefix(10).replacingOccurrences(of: "-", with: ""))"
            let from = IngestText.sqliteTimestamp(start)
            let to = IngestText.sqliteTimestamp(start + day)
            do {
                try await client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE TABLE IF NOT EXISTS \(name) PARTITION OF messages FOR VALUES FROM ('\(from)+00') TO ('\(to)+00')
                            """), logger: logger)
            } catch {
                // Rows of that day already sit in the default partition (e.g. the first start
                // after a long stop): they stay there; the next days get their partitions.
                logger.debug("partition \(name) not created: \(String(reflecting: error))")
            }
        }
        guard let cutoff else { return 0 }
        var dropped = 0
        let rows = try await client.query(
            """
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'messages' AND c.relname ~ '^messages_[0-9]{8}$'
                AND c.relnamespace = p.relnamespace
            """, logger: logger)
        var names: [String] = []
        for try await name in rows.decode(String.self) { names.append(name) }
        let cutoffDay = IngestText.sqliteTimestamp(cutoff / day * day).prefix(10).replacingOccurrences(of: "-", with: "")
        for name in names where String(name.dropFirst("messages_".count)) < cutoffDay {
            try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(name)"), logger: logger)
            dropped += 1
        }
        let bound = Double(cutoff) / 1000
        try await client.query("DELETE FROM messages_default WHERE received_at < to_timestamp(\(bound))", logger: logger)
        try await client.query("DELETE FROM ingest_dedup WHERE received_at < \(cutoff)", logger: logger)
        return dropped
    }
}
