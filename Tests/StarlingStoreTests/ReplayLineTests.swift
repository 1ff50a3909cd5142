import Foundation
import Logging
import PostgresNIO
import StarlingCore
import StarlingPostgres
import Testing

/// The replay line's first step on the real PostgreSQL: the node's earlier backends that could
/// still commit (the batch in doubt) are ended before the spool is replayed; the others are not.
@Suite("Replay line (PostgreSQL)", .enabled(if: TestPostgres.isConfigured))
struct ReplayLineTests {
    @Test(
        "G1: before a replay the node's backends in a transaction are ended; idle ones and reads on their own are left alone (ending them could only break a read still streaming)"
    )
    func endsOnlyWhatCouldCommit() async throws {
        guard let url = TestPostgres.url, let configuration = PostgresStore.connectionConfiguration(url: url) else { return }
        try await TestPostgres.withStore { _, client in
            let tag = "starling/test-\(UUID().uuidString.prefix(8).lowercased())"
            let logger = TestPostgres.logger
            try await client.withConnection { holder in
                try await client.withConnection { inTransaction in
                    try await client.withConnection { idle in
                        try await client.withConnection { reading in
                            for connection in [inTransaction, idle, reading] {
                                try await connection.query(PostgresQuery(unsafeSQL: "SET application_name = '\(tag)'"), logger: logger)
                            }
                            try await holder.query("SELECT pg_advisory_lock(4242777)", logger: logger)
                            try await inTransaction.query("BEGIN", logger: logger)
                            try await inTransaction.query("SELECT 1", logger: logger)
                            // A read on its own, still running (it waits for the advisory lock).
                            let read = Task { try await reading.query("SELECT pg_advisory_lock(4242777)", logger: logger) }
                            while try await Self.states(client, tag: tag)["active"] == nil { try await Task.sleep(for: .milliseconds(20)) }
                            let line = PostgresReplayLine(configuration: configuration, tag: tag, owner: nil, logger: logger)
                            try await line.endEarlierSessions()
                            await line.close()
                            let after = try await Self.states(client, tag: tag)
                            #expect(after == ["idle": 1, "active": 1])
                            try await holder.query("SELECT pg_advisory_unlock(4242777)", logger: logger)
                            _ = try await read.value
                            try await reading.query("SELECT pg_advisory_unlock(4242777)", logger: logger)
                        }
                    }
                }
            }
        }
    }

    /// The backends named `tag`, counted by state.
    static func states(_ client: PostgresClient, tag: String) async throws -> [String: Int] {
        var states: [String: Int] = [:]
        let rows = try await client.query("SELECT state FROM pg_stat_activity WHERE application_name = \(tag)", logger: TestPostgres.logger)
        for try await state in rows.decode(String.self) { states[state, default: 0] += 1 }
        return states
    }
}
