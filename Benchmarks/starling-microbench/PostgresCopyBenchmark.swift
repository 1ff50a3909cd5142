import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Issue 5 asks for `unnest` arrays and COPY into a staging table to be measured against each
/// other on the broker's rows. This writes the same rows as the store's `unnest` path (a payload
/// and a delivery row per message, batches of `StoreBenchmarks.batch`) with COPY: into temporary
/// staging tables, then `INSERT … SELECT … ON CONFLICT` into the real ones, in one transaction,
/// because a plain COPY cannot skip or update conflicting rows as the store must. A plain COPY
/// straight into the tables is measured too, as the ceiling of the format.
enum PostgresCopyBenchmark {
    static func run(client: PostgresClient, logger: Logger) async throws {
        for staged in [true, false] {
            let start = ContinuousClock.now
            var id = Int64(Date().timeIntervalSince1970 * 1000) * 1000 + (staged ? 0 : 500_000_000)
            var sequence: Int64 = staged ? 0 : 10_000_000
            for _ in 0..<(StoreBenchmarks.total / StoreBenchmarks.batch) {
                var payloads = ByteBuffer()
                var deliveries = ByteBuffer()
                for _ in 0..<StoreBenchmarks.batch {
                    id += 1
                    sequence += 1
                    // id, topic, payload (bytea as \\x hex), qos, retain, properties, expires_at, publisher
                    payloads.writeString("\(id)\tbench/1\t\\\\x\(payloadHex)\t1\tf\t\\N\t\\N\tbench-pub\n")
                    // client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id
                    deliveries.writeString("bench-sub\t\(sequence)\t\(id)\t1\tf\t\\N\t\\N\t\\N\t0\t\\N\n")
                }
                try await client.withTransaction(logger: logger) { connection in
                    if staged {
                        try await connection.query(
                            """
                            CREATE TEMP TABLE IF NOT EXISTS stage_payloads (LIKE message_payloads) ON COMMIT DELETE ROWS
                            """, logger: logger)
                        try await connection.query(
                            """
                            CREATE TEMP TABLE IF NOT EXISTS stage_deliveries (LIKE session_messages) ON COMMIT DELETE ROWS
                            """, logger: logger)
                    }
                    try await connection.copyFrom(table: staged ? "stage_payloads" : "message_payloads", logger: logger) { writer in
                        try await writer.write(payloads)
                    }
                    try await connection.copyFrom(
                        table: staged ? "stage_deliveries" : "session_messages", columns: deliveryColumns, logger: logger
                    ) { writer in
                        try await writer.write(deliveries)
                    }
                    if staged {
                        try await connection.query(
                            """
                            INSERT INTO message_payloads SELECT * FROM stage_payloads ON CONFLICT (id) DO NOTHING
                            """, logger: logger)
                        try await connection.query(
                            """
                            INSERT INTO session_messages SELECT * FROM stage_deliveries
                            ON CONFLICT (client_id, seq) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id
                            """, logger: logger)
                    }
                }
            }
            StoreBenchmarks.report(
                staged
                    ? "postgres COPY to staging + INSERT ON CONFLICT (payload + delivery)"
                    : "postgres plain COPY, no conflict handling (payload + delivery)",
                start: start)
        }
    }

    /// The ingest figure's rows (`StoreBenchmarks.ingestBatch`) by a plain COPY into `messages`,
    /// without their `ingest_dedup` entries: the ceiling of the format for the ingest bridge.
    static func ingestCeiling(client: PostgresClient, logger: Logger) async throws {
        let start = ContinuousClock.now
        for round in 0..<(StoreBenchmarks.total / StoreBenchmarks.batch) {
            let rows = IngestCopyRows.copyRows(StoreBenchmarks.ingestBatch(round))
            try await client.withConnection { connection in
                try await connection.copyFrom(table: "messages", columns: IngestCopyRows.copyColumns, logger: logger) { writer in
                    try await writer.write(rows)
                }
            }
        }
        StoreBenchmarks.report("postgres plain COPY of the ingest rows, no de-duplication", start: start)
    }

    /// The delivery columns the rows fill (later migrations added others, which keep their defaults).
    static let deliveryColumns = [
        "client_id", "seq", "message_id", "qos", "retain", "subscription_ids", "share_name", "share_filter", "state", "packet_id"
    ]

    /// The payload of `StoreBenchmarks`' queue rows, in hex.
    static let payloadHex = StoreBenchmarks.jsonPayload(0).utf8.map { String(format: "%02x", $0) }.joined()
}
