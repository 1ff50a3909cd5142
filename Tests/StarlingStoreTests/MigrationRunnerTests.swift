@testable import StarlingMigrations
import Testing

/// The runner both stores use, against a ledger in memory; the stores themselves are migrated
/// for real by every store test (SQLite, and PostgreSQL when it is configured).
@Suite("The migration runner")
struct MigrationRunnerTests {
    final class Ledger: MigrationTarget, @unchecked Sendable {
        var recorded: [Int: Int64]
        var ran: [Int] = []
        var failing: Int?
        init(recorded: [Int: Int64] = [:]) { self.recorded = recorded }

        func appliedVersions() async throws -> Set<Int> { Set(recorded.keys) }
        func apply(_ migration: Migration, appliedAt: Int64) async throws {
            struct Refused: Error {}
            if migration.version == failing { throw Refused() }
            ran.append(migration.version)
            recorded[migration.version] = appliedAt
        }
    }

    static let all = [3, 1, 2].map { Migration(version: $0, name: "m\($0)", sql: "SELECT \($0);\n") }

    @Test("applies what the ledger lacks, in order of the numbers, and records when")
    func appliesWhatIsMissing() async throws {
        let ledger = Ledger(recorded: [1: 5])
        let applied = try await MigrationRunner.run(Self.all, on: ledger, now: { 42 })
        #expect(applied == [2, 3])
        #expect(ledger.ran == [2, 3])
        #expect(ledger.recorded == [1: 5, 2: 42, 3: 42])
        #expect(try await MigrationRunner.run(Self.all, on: ledger).isEmpty)
    }

    @Test("a migration that fails stops the run before the next one")
    func stopsAtAFailure() async throws {
        let ledger = Ledger()
        ledger.failing = 2
        await #expect(throws: (any Error).self) { _ = try await MigrationRunner.run(Self.all, on: ledger) }
        #expect(ledger.ran == [1])
        #expect(ledger.recorded.keys.sorted() == [1])
    }

    @Test("a file's statements, one by one, without comment lines")
    func statements() {
        let migration = Migration(
            version: 1, name: "x",
            sql: """
                -- a table
                CREATE TABLE t (a integer); -- kept: not a comment line
                -- an index
                CREATE INDEX t_a ON t (a);

                """)
        #expect(migration.statements == ["CREATE TABLE t (a integer); -- kept: not a comment line\nCREATE INDEX t_a ON t (a)"])
    }
}
