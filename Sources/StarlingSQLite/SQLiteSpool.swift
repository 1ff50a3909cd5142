import Foundation
import GRDB
public import NIOCore
public import StarlingCore

/// The spool of a node on PostgreSQL (`FallbackStore`): a SQLite journal of the batches it
/// committed while PostgreSQL could not be reached, in `DIR/spool.db`. One row per batch, in
/// order (AUTOINCREMENT: a sequence is never reused, even after the rows before it go).
public final class SQLiteSpool: StoreSpool {
    public let id: String
    public let path: String
    private let pool: DatabasePool

    public init(path: String, synchronous: SQLiteStore.Synchronous = .normal) throws {
        self.path = path
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // A new file gives its pages back when emptied (`remove`): an outage's spool does
            // not keep its size on disk for ever. (Takes effect before the first table only.)
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL") }
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
            try db.execute(sql: "PRAGMA busy_timeout = 5000")
        }
        configuration.qos = .background
        pool = try DatabasePool(path: path, configuration: configuration)
        id = try pool.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, bytes INTEGER NOT NULL, batch BLOB NOT NULL,
                                                      in_doubt INTEGER NOT NULL DEFAULT 0);
                    """)
            if let id = try String.fetchOne(db, sql: "SELECT value FROM spool_meta WHERE key = 'id'") { return id }
            let id = UUID().uuidString.lowercased()
            try db.execute(sql: "INSERT INTO spool_meta (key, value) VALUES ('id', ?)", arguments: [id])
            return id
        }
    }

    public func append(_ batch: ByteBuffer, inDoubt: Bool) async throws -> Int64 {
        let data = Data(batch.readableBytesView)
        return try await pool.write { db in
            try db.cachedStatement(sql: "INSERT INTO spool (bytes, batch, in_doubt) VALUES (?, ?, ?)")
                .execute(arguments: [data.count, data, inDoubt])
            return db.lastInsertedRowID
        }
    }

    public func head(limit: Int) async throws -> [SpooledBatch] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, batch, in_doubt FROM spool ORDER BY seq LIMIT ?", arguments: [limit]).map { row in
                SpooledBatch(sequence: row["seq"], data: ByteBuffer(bytes: row["batch"] as Data), inDoubt: row["in_doubt"])
            }
        }
    }

    public func remove(through sequence: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM spool WHERE seq <= ?", arguments: [sequence])
        }
        // Replayed to the end: the free pages go back to the file system.
        if try await pool.read({ db in try Bool.fetchOne(db, sql: "SELECT NOT EXISTS (SELECT 1 FROM spool)") }) == true {
            try await pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA incremental_vacuum")
                try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
        }
    }

    public func totals() async throws -> (batches: Int, bytes: Int) {
        try await pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM spool")
            return (row?["n"] ?? 0, row?["bytes"] ?? 0)
        }
    }
}
