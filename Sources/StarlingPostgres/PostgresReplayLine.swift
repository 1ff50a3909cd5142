import Logging
import NIOCore
public import PostgresNIO
public import StarlingCore
import Synchronization

/// The spool replay's line to PostgreSQL: one connection of its own, opened on demand outside
/// `PostgresClient`'s pool (whose reconnection backoff after an outage is not ours to set), and
/// dropped after any failure or time-out.
///
/// Every connection of the node's pool carries the application name `tag` (`StoreSetup`): the
/// replay ends them all with `pg_terminate_backend` before it starts, so a commit the live path
/// tried before the switch (the batch in doubt) has committed or aborted by then and cannot
/// land behind the replay (a late original after its replayed copy would be a second row).
public final class PostgresReplayLine: ReplayLine {
    let configuration: PostgresConnection.Configuration
    /// The application name of the node's pool connections (`starling/<spool id>`).
    public let tag: String
    /// The node's id in a cluster (`PostgresStore.ownerNode`): replayed rows name it as the primary's do.
    let owner: String?
    let logger: Logger
    private let held = Mutex<PostgresConnection?>(nil)

    public init(configuration: PostgresConnection.Configuration, tag: String, owner: String?, logger: Logger) {
        self.owner = owner
        var configuration = configuration
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.additionalStartupParameters.removeAll { $0.0 == "application_name" }
        configuration.options.additionalStartupParameters.append(("application_name", tag + "/replay"))
        self.configuration = configuration
        self.tag = tag
        self.logger = logger
    }

    /// The application name to give the pool's connections so the replay can end them.
    public static func tag(spool: String) -> String { "starling/" + spool.prefix(48) }

    private func connection() async throws -> PostgresConnection {
        if let open = held.withLock({ $0 }), !open.isClosed { return open }
        let opened = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        let previous = held.withLock { held in
            defer { held = opened }
            return held
        }
        if let previous { Self.close(previous) }
        return opened
    }

    /// Runs `body` on the line; any failure drops the connection.
    private func run<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await connection()
        do {
            return try await body(connection)
        } catch {
            reset()
            throw error
        }
    }

    public func ping() async throws {
        try await run { connection in
            for try await _ in try await connection.query("SELECT 1", logger: logger) {}
        }
    }

    public func endEarlierSessions() async throws {
        let tag = self.tag
        let ended = try await run { connection -> Int in
            // Waits (up to 5 s each) until each backend has exited: its transaction is decided.
            let rows = try await connection.query("""
                SELECT count(*)::int8 FROM (
                    SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                    WHERE application_name = \(tag) AND pid <> pg_backend_pid()) AS ended
                """, logger: logger)
            var count = 0
            for try await n in rows.decode(Int64.self) { count = Int(n) }
            return count
        }
        if ended > 0 { logger.notice("ended \(ended) earlier PostgreSQL session(s) of this node before replaying the spool") }
    }

    public func apply(_ operations: [StoreOperation]) async throws {
        let batch = StoreBatch(operations)
        guard !batch.isEmpty else { return }
        try await run { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                try await PostgresStore.write(batch, on: connection, owner: owner, logger: logger)
                try await connection.query("COMMIT", logger: logger)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    public func replayedThrough(spool: String) async throws -> Int64 {
        try await run { connection in
            let rows = try await connection.query("SELECT through FROM spool_replays WHERE spool_id = \(spool)", logger: logger)
            for try await through in rows.decode(Int64.self) { return through }
            return 0
        }
    }

    public func reset() {
        let open = held.withLock { held in
            defer { held = nil }
            return held
        }
        if let open { Self.close(open) }
    }

    private static func close(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in }
    }
}
