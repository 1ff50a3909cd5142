import Foundation
import Logging
import PostgresNIO
import StarlingPostgres
import Testing

/// Long reads cut by the server: a database restart or `pg_terminate_backend` ends a read that is
/// still streaming. Through `rows` it fails with the server's error and the pool serves again.
/// The same schedule through postgres-nio's async row sequence, with a consumer that pauses after
/// its first row, stopped the process on the library's precondition (docs/architecture.md,
/// "Reading rows").
@Suite("Reading rows (PostgreSQL)", .enabled(if: TestPostgres.isConfigured))
struct RowsReadTests {
    @Test("G7: a read ended by the server while its rows stream fails with the server's error; the process and the pool carry on")
    func readEndedByTheServer() async throws {
        try await TestPostgres.withStore { _, client in
            let tag = "starling/rows-\(UUID().uuidString.prefix(8).lowercased())"
            let logger = TestPostgres.logger
            let lock = Int64.random(in: 1_000_000...9_000_000)
            try await client.withConnection { holder in
                try await holder.query("SELECT pg_advisory_lock(\(lock))", logger: logger)
                // 1,500 rows of 1 kB reach the client, then the statement waits on the lock the holder has.
                let read = Task {
                    try await client.withConnection { reading in
                        try await reading.query(PostgresQuery(unsafeSQL: "SET application_name = '\(tag)'"), logger: logger)
                        return try await reading.rows(
                            """
                            SELECT i, repeat('x', 1000) || CASE WHEN i = 1501 THEN pg_advisory_lock(\(lock))::text ELSE '' END
                            FROM generate_series(1, 1600) i
                            """, logger: logger)
                    }
                }
                while try await Self.waitingOnTheLock(client, tag: tag) == 0 { try await Task.sleep(for: .milliseconds(20)) }
                try await holder.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = \(tag)", logger: logger)
                let outcome = await read.result
                #expect(throws: (any Error).self) { try outcome.get() }
                try await holder.query("SELECT pg_advisory_unlock(\(lock))", logger: logger)
            }
            let after = try await client.rows("SELECT i FROM generate_series(1, 700) i", logger: logger)
            #expect(after.count == 700)
        }
    }

    /// The backends named `tag` waiting on an advisory lock.
    static func waitingOnTheLock(_ client: PostgresClient, tag: String) async throws -> Int {
        let rows = try await client.rows(
            "SELECT pid FROM pg_stat_activity WHERE application_name = \(tag) AND wait_event = 'advisory'", logger: TestPostgres.logger)
        return rows.count
    }
}
