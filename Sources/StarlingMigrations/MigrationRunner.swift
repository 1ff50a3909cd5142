import Foundation

/// A database that migrations are applied to, seen by the one runner both stores use
/// (`MigrationRunner`): each store says only how it reads the ledger and runs one migration.
public protocol MigrationTarget {
    /// The versions recorded in the ledger (`MigrationRunner.ledger`), created if missing.
    func appliedVersions() async throws -> Set<Int>
    /// Runs `migration` and records it in the ledger (`version`, `name`, `appliedAt`
    /// milliseconds since 1970), both or neither.
    func apply(_ migration: Migration, appliedAt: Int64) async throws
}

/// Applies the numbered migrations of `migrations/<database>/` that the ledger does not record,
/// in order of their numbers: the same steps on SQLite and PostgreSQL (README "Upgrades").
public enum MigrationRunner {
    /// The ledger of applied migrations, in SQL both databases accept.
    public static let ledger = """
        CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)
        """

    /// Milliseconds since 1970, when a migration is recorded.
    public static let wallClock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Applies what `target` lacks of `migrations`; returns the versions applied now.
    @discardableResult
    public static func run(
        _ migrations: [Migration], on target: some MigrationTarget,
        now: () -> Int64 = MigrationRunner.wallClock
    ) async throws -> [Int] {
        let applied = try await target.appliedVersions()
        var done: [Int] = []
        for migration in migrations.sorted(by: { $0.version < $1.version }) where !applied.contains(migration.version) {
            try await target.apply(migration, appliedAt: now())
            done.append(migration.version)
        }
        return done
    }
}

extension Migration {
    /// The file's statements one by one, for a protocol that takes one statement per query
    /// (PostgreSQL's extended protocol): migration files end each statement with ";" at the end
    /// of a line; comment lines are left out.
    public var statements: [String] {
        sql.components(separatedBy: ";\n").compactMap { statement in
            let text = statement.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
                .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        }
    }
}
