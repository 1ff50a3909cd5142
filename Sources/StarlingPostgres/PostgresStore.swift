import Foundation
public import Logging
import MQTTCodec
import NIOCore
public import PostgresNIO
public import StarlingCore
import StarlingMigrations

/// The shared store: PostgreSQL through postgres-nio's `PostgresClient`, which must be running
/// (`client.run()` in the ServiceGroup).
///
/// A batch is folded (`StoreBatch`) and written with one statement per table: the hot tables
/// (payloads, deliveries, inbound QoS 2, retained) through `unnest` of arrays, which measured
/// fastest among statements that can carry `ON CONFLICT` (66–91 k rows/s measured on a 2-core machine).
public final class PostgresStore: PersistentStore {
    public let name = "postgres"
    /// Up to three transactions over the pool's connections: batches of new rows commit while
    /// others are sent (measured: 2 → 3 took durable fan-in from 0.75–0.88 to 0.96 of the raw rate).
    public let concurrentCommits = 3
    /// The live path's pool (renewed after an outage: `PostgresPool`).
    public let pool: PostgresPool
    public var client: PostgresClient { pool.client }
    let logger: Logger

    /// The schema to create before migrating (from `?schema=`), if any.
    let schema: String?

    /// In a cluster, this node's id: session rows it writes name it as their owner, and it
    /// restores only its own. nil: the node runs alone and owns every row.
    public let ownerNode: String?

    public convenience init(client: PostgresClient, logger: Logger, schema: String? = nil, ownerNode: String? = nil) {
        self.init(pool: PostgresPool(client: client, logger: logger), logger: logger, schema: schema, ownerNode: ownerNode)
    }

    public init(pool: PostgresPool, logger: Logger, schema: String? = nil, ownerNode: String? = nil) {
        (self.pool, self.logger, self.schema, self.ownerNode) = (pool, logger, schema, ownerNode)
    }

    /// The same URL as a configuration of one connection (the spool replay's line).
    public static func connectionConfiguration(url: String) -> PostgresConnection.Configuration? {
        guard let pool = configuration(url: url), let host = pool.host else { return nil }
        var configuration = PostgresConnection.Configuration(
            host: host, port: pool.port ?? 5432, username: pool.username,
            password: pool.password, database: pool.database, tls: .disable)
        configuration.options.additionalStartupParameters = pool.options.additionalStartupParameters
        return configuration
    }

    /// Parses `postgres://user:password@host:port/database` into a client configuration.
    public static func configuration(url: String) -> PostgresClient.Configuration? {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
        else { return nil }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: components.password,
            database: database.isEmpty ? nil : database, tls: .disable)
        configuration.options.maximumConnections = 8
        // A transaction left open by a node that stopped (frozen, its VM paused) would hold its
        // row locks, and with them the claims of its clients' sessions, until it resumed: the
        // database ends it after half a second. Starling's transactions send their statements back
        // to back; one ended so is retried (FallbackStore) and fenced then (docs/architecture.md).
        configuration.options.additionalStartupParameters = [("idle_in_transaction_session_timeout", "500")]
        // `?schema=NAME` keeps Starling's tables in a schema of their own (created if missing).
        if let schema = components.queryItems?.first(where: { $0.name == "schema" })?.value, !schema.isEmpty {
            configuration.options.additionalStartupParameters.append(("search_path", schema))
        }
        return configuration
    }

    /// The schema named by `?schema=` in a URL, if any.
    public static func schema(url: String) -> String? {
        URLComponents(string: url)?.queryItems?.first(where: { $0.name == "schema" })?.value
    }

    public func migrate() async throws {
        if let schema {
            let quoted = "\"" + schema.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(quoted)"), logger: logger)
        }
        try await client.withTransaction(logger: logger) { connection in
            // One node migrates at a time.
            try await connection.query("SELECT pg_advisory_xact_lock(4242001)", logger: logger)
            try await MigrationRunner.run(
                Migrations.postgres, on: PostgresMigrationTarget(connection: connection, logger: logger))
        }
    }

    public func apply(_ operations: [StoreOperation]) async throws {
        let batch = StoreBatch(operations)
        guard !batch.isEmpty else { return }
        // A statement is a transaction of its own: the batches of the hot paths (new queued
        // messages; ingest rows) are one statement each and skip BEGIN and COMMIT, two of the
        // three round trips a commit would otherwise wait for.
        if let statement = PostgresWrites.singleStatement(batch) {
            try await client.query(statement, logger: logger)
            return
        }
        try await client.withTransaction(logger: logger) { connection in
            try await PostgresWrites.write(batch, on: connection, owner: self.ownerNode, logger: self.logger)
        }
    }

    /// Fenced operations (`StoreOperation.fenced`) commit only while their session's row holds
    /// no later claim: the rows are read `FOR SHARE` in the transaction that writes, so a claim
    /// either committed first (and is seen: the fenced operations are left out) or waits for
    /// this commit (and the claimer reads what it wrote). Nor while the store holds a QoS 2
    /// entry they add as new (`StoreOperation.newInboundQoS2`).
    public func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        let fences = StoreOperation.fences(in: operations)
        guard !fences.isEmpty else {
            try await apply(operations)
            return []
        }
        return try await client.withTransaction(logger: logger) { connection in
            let stale = try await PostgresWrites.staleFences(
                fences, newInbound: StoreOperation.newInboundQoS2(in: operations), on: connection, logger: self.logger)
            let batch = StoreBatch(operations, dropping: stale)
            if !batch.isEmpty { try await PostgresWrites.write(batch, on: connection, owner: self.ownerNode, logger: self.logger) }
            return stale
        }
    }

    public func loadUsers() async throws -> [StoredUser] {
        var users: [StoredUser] = []
        let rows = try await client.query("SELECT username, password_hash, scram_sha256 FROM users ORDER BY username", logger: logger)
        for try await (username, hash, scram) in rows.decode((String, String, String?).self) {
            users.append(StoredUser(username: username, passwordHash: hash, scram: scram))
        }
        return users
    }

    public func saveUser(_ user: StoredUser) async throws {
        try await client.query(
            """
            INSERT INTO users (username, password_hash, scram_sha256) VALUES (\(user.username), \(user.passwordHash), \(user.scram))
            ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, scram_sha256 = excluded.scram_sha256, updated_at = now()
            """, logger: logger)
    }

    public func deleteUser(_ username: String) async throws -> Bool {
        let rows = try await client.query("DELETE FROM users WHERE username = \(username) RETURNING 1", logger: logger)
        var deleted = false
        for try await _ in rows { deleted = true }
        return deleted
    }

    public func replayedThrough(spool: String) async throws -> Int64 {
        let rows = try await client.query("SELECT through FROM spool_replays WHERE spool_id = \(spool)", logger: logger)
        for try await through in rows.decode(Int64.self) { return through }
        return 0
    }

    /// Lost or refused connections, the pool's own errors, and statements the server cancelled
    /// because it is shutting down (SQLSTATE class 57, 08): the database is away, not the batch.
    public func isUnreachable(_ error: any Error) -> Bool {
        if error is PostgresLine.Timeout { return true }
        if let transaction = error as? PostgresTransactionError {
            // BEGIN, a statement or COMMIT that failed for want of the database.
            return [transaction.beginError, transaction.closureError, transaction.commitError].contains { $0.map(isUnreachable) ?? false }
        }
        // The pool's own errors (shut down when renewed, a lease that timed out): its type is
        // internal to postgres-nio's pool module.
        if String(describing: type(of: error)) == "ConnectionPoolError" { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
            .sslUnsupported, .failedToAddSSLHandler:
            return true
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            // 25P03: the database ended the connection, idle in a transaction for longer than
            // `idle_in_transaction_session_timeout` (a process that was stopped, or starved of
            // CPU): the transaction is gone with it, as with a lost connection.
            return state.hasPrefix("08") || state.hasPrefix("57") || state.hasPrefix("53") || state == "25P03"
        default:
            return false
        }
    }

    public func ping() async throws {
        let rows = try await client.query("SELECT 1", logger: logger)
        for try await _ in rows {}
    }

    public func collectGarbage() async throws -> Int {
        var count = 0
        let rows = try await client.query(
            """
            WITH gone AS (DELETE FROM message_payloads p WHERE NOT EXISTS (SELECT 1 FROM session_messages s WHERE s.message_id = p.id) RETURNING 1)
            SELECT count(*)::int8 FROM gone
            """, logger: logger)
        for try await n in rows.decode(Int64.self) { count = Int(n) }
        try await client.query("DELETE FROM session_messages WHERE state = 3 AND ended_at < now() - interval '1 day'", logger: logger)
        return count
    }
}

extension PostgresStore {
    /// The store's session-ownership side (claims, the dead-node clean-up, the directory).
    public var ownership: PostgresOwnership { PostgresOwnership(store: self) }
}
