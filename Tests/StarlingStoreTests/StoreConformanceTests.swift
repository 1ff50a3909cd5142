import Foundation
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
        let store = try SQLiteStore(path: directory.appendingPathComponent("starling.db").path)
        try await store.migrate()
        try await Self.check(named: name)(store)
    }

    @Test("PostgreSQL", .enabled(if: TestPostgres.isConfigured), arguments: names)
    func postgres(_ name: String) async throws {
        try await TestPostgres.withStore { store in
            try await Self.check(named: name)(store)
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

    static func withStore(_ body: (PostgresStore) async throws -> Void) async throws {
        guard let url, var configuration = PostgresStore.configuration(url: url) else {
            Issue.record("STARLING_TEST_POSTGRES_URL is not a postgres:// URL")
            return
        }
        let schema = "t_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased())"
        configuration.options.additionalStartupParameters = [("search_path", schema)]
        let logger = Logger(label: "test.postgres")
        let client = PostgresClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"), logger: logger)
            do {
                let store = PostgresStore(client: client, logger: logger)
                try await store.migrate()
                try await body(store)
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
