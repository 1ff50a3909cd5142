import Foundation
import StarlingMigrations
import Testing

@Suite("Migrations")
struct MigrationFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func files(_ kind: String) throws -> [(Int, String, String)] {
        let directory = root.appendingPathComponent("migrations").appendingPathComponent(kind)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted().map { name in
            let stem = String(name.dropLast(4))
            let parts = stem.split(separator: "_", maxSplits: 1)
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            return (Int(parts[0])!, String(parts[1]), sql)
        }
    }

    @Test(
        "the embedded migrations are the SQL files (run scripts/generate-migrations after editing them)",
        arguments: ["sqlite", "postgres"])
    func embeddedMatchFiles(_ kind: String) throws {
        let embedded = kind == "sqlite" ? Migrations.sqlite : Migrations.postgres
        let files = try Self.files(kind)
        #expect(embedded.map(\.version) == files.map(\.0))
        #expect(embedded.map(\.name) == files.map(\.1))
        for (migration, file) in zip(embedded, files) {
            #expect(migration.sql.trimmingCharacters(in: .whitespacesAndNewlines) == file.2.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    @Test("SQLite and PostgreSQL have the same numbered migrations")
    func sameNumbers() throws {
        #expect(try Self.files("sqlite").map(\.0) == Self.files("postgres").map(\.0))
    }
}
