import GRDB
import StarlingMigrations

/// The migrations' view of SQLite: each migration and its ledger row in one write transaction.
struct SQLiteMigrationTarget: MigrationTarget {
    let pool: DatabasePool

    func appliedVersions() async throws -> Set<Int> {
        try await pool.write { db in
            try db.execute(sql: MigrationRunner.ledger)
            return Set(try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations"))
        }
    }

    func apply(_ migration: Migration, appliedAt: Int64) async throws {
        try await pool.write { db in
            // SQLite runs a file's statements in one call.
            try db.execute(sql: migration.sql)
            try db.execute(
                sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                arguments: [migration.version, migration.name, appliedAt])
        }
    }
}
