import Logging
import NIOCore
public import PostgresNIO
public import StarlingCore

/// The spool replay's line to PostgreSQL (`ReplayLine`): a `PostgresLine` of its own.
///
/// Every connection of the node's pool carries the application name `tag` (`StoreSetup`): the
/// replay ends them all with `pg_terminate_backend` before it starts, so a commit the live path
/// tried before the switch (the batch in doubt) has committed or aborted by then and cannot
/// land behind the replay (a late original after its replayed copy would be a second row).
public final class PostgresReplayLine: ReplayLine {
    let line: PostgresLine
    /// The application name of the node's pool connections (`starling/<spool id>`).
    public let tag: String
    /// The node's id in a cluster (`PostgresStore.ownerNode`): replayed rows name it as the primary's do.
    let owner: String?
    let logger: Logger

    public init(configuration: PostgresConnection.Configuration, tag: String, owner: String?, logger: Logger) {
        // Replayed transactions hold up to `FallbackStore.replayBatch` operations: the caller's limits apply.
        self.line = PostgresLine(configuration: configuration, name: tag + "/replay", timeout: .seconds(60), logger: logger)
        (self.tag, self.owner, self.logger) = (tag, owner, logger)
    }

    /// The application name to give the pool's connections so the replay can end them.
    public static func tag(spool: String) -> String { "starling/" + spool.prefix(48) }

    public func ping() async throws {
        try await line.query("SELECT 1") { rows in for try await _ in rows {} }
    }

    public func endEarlierSessions() async throws {
        // Waits (up to 5 s each) until each backend has exited: its transaction is decided.
        // Only backends that could still commit: in a transaction, or running anything but a
        // plain read (a SELECT that locks no rows and holds no transaction id: the store's
        // transactions begin with writes or a SELECT … FOR SHARE). An idle backend, or
        // one streaming a read (a pickup, a claimed session, a restore), commits nothing, and
        // ending it would close a connection whose rows postgres-nio may still be reading (a
        // close there can trip postgres-nio's row-stream precondition: README "Known limits").
        let ended = try await line.query(
            """
            SELECT count(*)::int8 FROM (
                SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                WHERE application_name = \(tag) AND pid <> pg_backend_pid()
                  AND (state LIKE 'idle in transaction%'
                       OR (state <> 'idle' AND NOT (backend_xid IS NULL AND query ~* '^\\s*select' AND query !~* '\\mfor\\s+(share|update|no key update|key share)\\M')))
                ) AS ended
            """
        ) { rows in
            var count: Int64 = 0
            for try await n in rows.decode(Int64.self) { count = n }
            return count
        }
        if ended > 0 { logger.notice("ended \(ended) earlier PostgreSQL session(s) of this node before replaying the spool") }
    }

    /// Applies replayed operations in one transaction; what a connection sent after a later
    /// claim of its session had been made is left out (`SessionFence.isStale`).
    public func apply(_ operations: [StoreOperation]) async throws {
        let fences = StoreOperation.fences(in: operations)
        let (owner, logger) = (owner, logger)
        let left = try await line.run { connection -> Int in
            try await connection.query("BEGIN", logger: logger)
            do {
                let stale = fences.isEmpty ? [] : try await PostgresWrites.staleFences(fences, on: connection, logger: logger)
                let batch = StoreBatch(operations, dropping: stale)
                if !batch.isEmpty { try await PostgresWrites.write(batch, on: connection, owner: owner, logger: logger) }
                try await connection.query("COMMIT", logger: logger)
                return stale.count
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
        if left > 0 {
            logger.notice(
                "the replay left out what \(left) connection(s) sent after their sessions were claimed elsewhere (never acknowledged to the devices)"
            )
        }
    }

    public func replayedThrough(spool: String) async throws -> Int64 {
        try await line.query("SELECT through FROM spool_replays WHERE spool_id = \(spool)") { rows in
            for try await through in rows.decode(Int64.self) { return through }
            return 0
        }
    }

    public func replayPending(spool: String, _ pending: Bool) async throws {
        let owner = self.owner
        try await line.query(
            """
            INSERT INTO spool_replays (spool_id, through, node_id, pending) VALUES (\(spool), 0, \(owner), \(pending))
            ON CONFLICT (spool_id) DO UPDATE SET pending = excluded.pending, node_id = excluded.node_id
            """
        ) { rows in for try await _ in rows {} }
    }

    public func reset() { line.reset() }

    /// Closes the line for good (at shutdown).
    public func close() async { await line.close() }
}
