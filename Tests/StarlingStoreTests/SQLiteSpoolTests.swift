import Foundation
import NIOCore
import StarlingCore
import StarlingSQLite
import Testing

/// The spool file of the SQLite fallback: batches come back in order with their marks, a
/// sequence is never reused, the id survives a reopen, and an emptied spool gives its pages back.
@Suite("SQLite spool")
struct SQLiteSpoolTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("starling-spool-\(UUID().uuidString)")

    func path() throws -> String {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("spool.db").path
    }

    @Test func batchesComeBackInOrderAndSequencesAreNeverReused() async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try path()
        let spool = try SQLiteSpool(path: file)
        let first = try await spool.append(ByteBuffer(string: "one"), inDoubt: true)
        let second = try await spool.append(ByteBuffer(string: "two"), inDoubt: false)
        #expect(second > first)
        let head = try await spool.head(limit: 10)
        #expect(head.map { String(buffer: $0.data) } == ["one", "two"] && head.map(\.inDoubt) == [true, false])
        #expect(try await spool.totals() == (2, 6))
        try await spool.remove(through: second)
        #expect(try await spool.totals() == (0, 0))

        let reopened = try SQLiteSpool(path: file)
        #expect(reopened.id == spool.id)
        #expect(try await reopened.append(ByteBuffer(string: "three"), inDoubt: false) > second)
    }

    @Test func anEmptiedSpoolGivesItsPagesBack() async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try path()
        let spool = try SQLiteSpool(path: file)
        var last: Int64 = 0
        for _ in 0..<200 { last = try await spool.append(ByteBuffer(repeating: 1, count: 50_000), inDoubt: false) }
        let full = try SQLiteSpool.fileSize(file)
        try await spool.remove(through: last)
        let emptied = try SQLiteSpool.fileSize(file)
        #expect(full > 5_000_000 && emptied < full / 10, "\(full) → \(emptied) bytes")
    }
}

extension SQLiteSpool {
    /// The database file and its write-ahead log, as the disk holds them after a checkpoint.
    static func fileSize(_ path: String) throws -> Int {
        let size = { (p: String) in (try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0 }
        return size(path) + size(path + "-wal")
    }
}
