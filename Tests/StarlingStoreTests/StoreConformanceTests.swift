import Foundation
import GRDB
import Logging
import PostgresNIO
import StarlingCore
import StarlingPostgres
import StarlingSQLite
import StarlingTesting
import Testing

/// The one storage conformance suite, run against each adapter.
@Suite("Storage conformance")
struct StoreConformanceTests {
    static let names = StoreConformance.checks.map(\.name)

    static func check(named name: String) -> StoreConformance.Check {
        StoreConformance.checks.first { $0.name == name }!.check
    }

    @Test("SQLite", arguments: names)
    func sqlite(_ name: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("starling-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("starling.db").path
        let store = try SQLiteStore(path: path)
        try await store.migrate()
        try await Self.check(named: name)(
            StoreUnderTest(store: store) {
                // A reader of its own: WAL lets it read beside the store's writer.
                let reader = try DatabaseQueue(path: path)
                return try await reader.read { db in
                    try Row.fetchAll(db, sql: "SELECT client_id, packet_id, CAST(payload AS TEXT) AS p FROM messages ORDER BY id").map {
                        IngestedRow(clientID: $0["client_id"], packetID: $0["packet_id"], payload: $0["p"])
                    }
                }
            })
    }

    @Test("PostgreSQL", .enabled(if: TestPostgres.isConfigured), arguments: names)
    func postgres(_ name: String) async throws {
        try await TestPostgres.withStore { store, client in
            try await Self.check(named: name)(
                StoreUnderTest(store: store) {
                    var rows: [IngestedRow] = []
                    let query: PostgresQuery = "SELECT client_id, packet_id, convert_from(payload, 'UTF8') FROM messages ORDER BY id"
                    for try await (clientID, packetID, payload) in try await client.query(query, logger: TestPostgres.logger)
                        .decode((String, Int32?, String).self)
                    {
                        rows.append(IngestedRow(clientID: clientID, packetID: packetID.map(Int.init), payload: payload))
                    }
                    return rows
                })
        }
    }

    @Test("PostgreSQL tests run whenever CI is set")
    func postgresConfiguredOnCI() {
        if ProcessInfo.processInfo.environment["CI"] != nil {
            #expect(TestPostgres.isConfigured, "CI is set but STARLING_TEST_POSTGRES_URL is not: the PostgreSQL tests would be skipped")
        }
    }
}

/// A private PostgreSQL from `scripts/with-postgres` (STARLING_TEST_POSTGRES_URL); each use gets
/// its own schema, dropped afterwards.
enum TestPostgres {
    static var url: String? { ProcessInfo.processInfo.environment["STARLING_TEST_POSTGRES_URL"] }
    static var isConfigured: Bool { url != nil }

    static let logger = Logger(label: "test.postgres")

    static func withStore(_ body: (PostgresStore, PostgresClient) async throws -> Void) async throws {
        guard let url, var configuration = PostgresStore.configuration(url: url) else {
            Issue.record("STARLING_TEST_POSTGRES_URL is not a postgres:// URL")
            return
        }
        let schema = "t_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased())"
        configuration.options.additionalStartupParameters = [("search_path", schema)]
        let client = PostgresClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"), logger: logger)
            do {
                let store = PostgresStore(client: client, logger: logger)
                try await store.migrate()
                try await body(store, client)
            } catch {
                _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"), logger: logger)
                group.cancelAll()
                throw error
            }
            try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"), logger: logger)
            group.cancelAll()
        }
    }
}
