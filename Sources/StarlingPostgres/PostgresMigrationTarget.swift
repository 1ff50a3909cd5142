import Logging
import PostgresNIO
import StarlingMigrations

/// The migrations' view of PostgreSQL: one connection inside the transaction that holds the
/// migration lock (`PostgresStore.migrate`), so every migration of a start commits together.
struct PostgresMigrationTarget: MigrationTarget {
    let connection: PostgresConnection
    let logger: Logger

    func appliedVersions() async throws -> Set<Int> {
        try await connection.query(PostgresQuery(unsafeSQL: MigrationRunner.ledger), logger: logger)
        var applied: Set<Int> = []
        for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
            applied.insert(version)
        }
        return applied
    }

    func apply(_ migration: Migration, appliedAt: Int64) async throws {
        // The extended protocol takes one statement at a time.
        for statement in migration.statements {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
        try await connection.query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(migration.version), \(migration.name), \(appliedAt))",
            logger: logger)
    }
}
