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
        self.pool = pool
        self.logger = logger
        self.schema = schema
        self.ownerNode = ownerNode
    }

    /// The same URL as a configuration of one connection (the spool replay's line).
    public static func connectionConfiguration(url: String) -> PostgresConnection.Configuration? {
        guard let pool = configuration(url: url), let host = pool.host else { return nil }
        var configuration = PostgresConnection.Configuration(host: host, port: pool.port ?? 5432, username: pool.username,
                                                             password: pool.password, database: pool.database, tls: .disable)
        configuration.options.additionalStartupParameters = pool.options.additionalStartupParameters
        return configuration
    }

    /// Parses `postgres://user:password@host:port/database` into a client configuration.
    public static func configuration(url: String) -> PostgresClient.Configuration? {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty else { return nil }
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
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)
                """, logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in Migrations.postgres where !applied.contains(migration.version) {
                // The extended protocol takes one statement at a time; migration files end each
                // statement with ";" at the end of a line.
                for statement in migration.sql.components(separatedBy: ";\n") {
                    let sql = statement.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
                        .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
                    if sql.isEmpty { continue }
                    try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
                }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                try await connection.query("""
                    INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(migration.version), \(migration.name), \(now))
                    """, logger: logger)
            }
        }
    }

    public func apply(_ operations: [StoreOperation]) async throws {
        let batch = StoreBatch(operations)
        guard !batch.isEmpty else { return }
        // A statement is a transaction of its own: the batches of the hot paths (new queued
        // messages; ingest rows) are one statement each and skip BEGIN and COMMIT, two of the
        // three round trips a commit would otherwise wait for.
        if let statement = Self.singleStatement(batch) {
            try await client.query(statement, logger: logger)
            return
        }
        try await client.withTransaction(logger: logger) { connection in
            try await Self.write(batch, on: connection, owner: self.ownerNode, logger: self.logger)
        }
    }

    /// Fenced operations (`StoreOperation.fenced`) commit only while their session's row holds
    /// no later claim: the rows are read `FOR SHARE` in the transaction that writes, so a claim
    /// either committed first (and is seen: the fenced operations are left out) or waits for
    /// this commit (and the claimer reads what it wrote).
    public func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        let fences = StoreOperation.fences(in: operations)
        guard !fences.isEmpty else {
            try await apply(operations)
            return []
        }
        return try await client.withTransaction(logger: logger) { connection in
            let stale = try await Self.staleFences(fences, on: connection, logger: self.logger)
            let batch = StoreBatch(StoreOperation.unfenced(operations, dropping: stale))
            if !batch.isEmpty { try await Self.write(batch, on: connection, owner: self.ownerNode, logger: self.logger) }
            return stale
        }
    }

    /// The fences a later claim has overtaken, the sessions' rows locked until the commit.
    static func staleFences(_ fences: Set<SessionFence>, on connection: PostgresConnection, logger: Logger) async throws -> Set<SessionFence> {
        let clients = Array(Set(fences.map(\.clientID))).sorted()
        var rows: [String: (epoch: Int64, claimedAt: Int64?, recent: [Int64])] = [:]
        let result = try await connection.query("""
            SELECT client_id, claim_epoch, claimed_at, recent_claims FROM sessions WHERE client_id = ANY(\(clients)) ORDER BY client_id FOR SHARE
            """, logger: logger)
        for try await (clientID, epoch, claimedAt, recent) in result.decode((String, Int64, Int64?, [Int64]?).self) {
            rows[clientID] = (epoch, claimedAt, recent ?? [])
        }
        return fences.filter { fence in
            guard let row = rows[fence.clientID] else { return false }
            // The first claim after the fence's own: a session may have moved on since (migration 0013).
            let first = SessionFence.firstClaim(after: fence.epoch, in: row.recent) ?? row.claimedAt
            return fence.isStale(current: row.epoch, claimedAt: first)
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
        try await client.query("""
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
            return state.hasPrefix("08") || state.hasPrefix("57") || state.hasPrefix("53")
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
        let rows = try await client.query("""
            WITH gone AS (DELETE FROM message_payloads p WHERE NOT EXISTS (SELECT 1 FROM session_messages s WHERE s.message_id = p.id) RETURNING 1)
            SELECT count(*)::int8 FROM gone
            """, logger: logger)
        for try await n in rows.decode(Int64.self) { count = Int(n) }
        try await client.query("DELETE FROM session_messages WHERE state = 3 AND ended_at < now() - interval '1 day'", logger: logger)
        return count
    }

    static func write(_ batch: StoreBatch, on connection: PostgresConnection, owner: String?, logger: Logger) async throws {
        if !batch.resetSessions.isEmpty {
            // In a cluster only the owner's deletes count: a session another node claimed meanwhile
            // is its own now.
            try await connection.query("""
                DELETE FROM sessions WHERE client_id = ANY(\(batch.resetSessions))
                    AND (owner_node IS NULL OR \(owner)::text IS NULL OR owner_node = \(owner)::text)
                """, logger: logger)
            // Nor do its QoS 2 entries go while another node holds the session.
            try await connection.query("""
                DELETE FROM inbound_qos2 q WHERE client_id = ANY(\(batch.resetSessions))
                    AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = q.client_id)
                """, logger: logger)
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for s in batch.sessions.values {
            let will = s.will
            try await connection.query("""
                INSERT INTO sessions (client_id, protocol_version, expiry_interval, expires_at, connected, username,
                    will_topic, will_payload, will_qos, will_retain, will_properties, will_due_at, updated_at, owner_node, claim_epoch)
                VALUES (\(s.clientID), \(Int16(s.version.rawValue)), \(Int64(s.expiryInterval)), \(s.expiresAt), \(s.connected), \(s.username),
                    \(will?.topic), \(will?.payload), \(will.map { Int16($0.qos.rawValue) }), \(will?.retain),
                    \(will.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) }), \(s.willDueAt), \(now), \(owner), \(s.epoch))
                ON CONFLICT (client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
                    expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at, connected = excluded.connected,
                    username = excluded.username, will_topic = excluded.will_topic, will_payload = excluded.will_payload,
                    will_qos = excluded.will_qos, will_retain = excluded.will_retain, will_properties = excluded.will_properties,
                    will_due_at = excluded.will_due_at, updated_at = excluded.updated_at, owner_node = excluded.owner_node,
                    claim_epoch = excluded.claim_epoch
                WHERE sessions.claim_epoch < excluded.claim_epoch
                    OR (sessions.claim_epoch = excluded.claim_epoch
                        AND (sessions.owner_node IS NULL OR excluded.owner_node IS NULL OR sessions.owner_node = excluded.owner_node))
                """, logger: logger)
        }
        for (key, change) in batch.subscriptions {
            switch change {
            case .upsert(let stored):
                let sub = stored.subscription
                try await connection.query("""
                    INSERT INTO subscriptions (client_id, filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
                    VALUES (\(stored.clientID), \(sub.filter.raw), \(Int16(sub.qos.rawValue)), \(sub.noLocal), \(sub.retainAsPublished),
                            \(Int16(sub.retainHandling.rawValue)), \(sub.identifier.map { Int32(clamping: $0) }))
                    ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
                        retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
                        subscription_id = excluded.subscription_id
                    """, logger: logger)
            case .delete:
                try await connection.query("DELETE FROM subscriptions WHERE client_id = \(key.clientID) AND filter = \(key.filter)", logger: logger)
            }
        }
        // Ingest first: in a replayed batch it decides which messages another node took already
        // (`takenElsewhere`), and those are not queued for subscribers a second time.
        // Ingest before inbound QoS 2 entries: a QoS 2 row is stored with its entry.
        let taken = try await writeIngest(batch.ingest, on: connection, logger: logger)
        try await writeQueued(batch, leavingOut: takenElsewhere(batch, duplicates: taken), on: connection, logger: logger)
        try await writeInbound(batch, on: connection, logger: logger)
        try await writeRetained(batch, on: connection, logger: logger)
        if let owner { try await writeConnectionWills(batch, owner: owner, on: connection, logger: logger) }
        for (spool, through) in batch.replayMarks {
            try await connection.query("""
                INSERT INTO spool_replays (spool_id, through, node_id) VALUES (\(spool), \(through), \(owner))
                ON CONFLICT (spool_id) DO UPDATE SET through = greatest(spool_replays.through, excluded.through), replayed_at = now()
                """, logger: logger)
        }
    }

    /// Connection wills (migration 0007), rows of this node.
    private static func writeConnectionWills(_ batch: StoreBatch, owner: String, on connection: PostgresConnection, logger: Logger) async throws {
        var deleted: [Int64] = []
        for (token, change) in batch.connectionWills {
            switch change {
            case .upsert(let w):
                try await connection.query("""
                    INSERT INTO connection_wills (node_id, client_id, token, topic, payload, qos, retain, properties)
                    VALUES (\(owner), \(w.clientID), \(token), \(w.will.topic), \(w.will.payload), \(Int16(w.will.qos.rawValue)),
                            \(w.will.retain), \(ByteBuffer(bytes: StoreCoding.encode(w.will.properties))))
                    ON CONFLICT (node_id, token) DO UPDATE SET topic = excluded.topic, payload = excluded.payload, qos = excluded.qos,
                        retain = excluded.retain, properties = excluded.properties
                    """, logger: logger)
            case .delete:
                deleted.append(token)
            }
        }
        if !deleted.isEmpty {
            try await connection.query("DELETE FROM connection_wills WHERE node_id = \(owner) AND token = ANY(\(deleted))", logger: logger)
        }
    }

    /// The one statement that writes `batch`, when one can: new payloads with their deliveries
    /// and nothing else, or ingest records of a single round and nothing else.
    static func singleStatement(_ batch: StoreBatch) -> PostgresQuery? {
        if batch.resetSessions.isEmpty && batch.sessions.isEmpty && batch.subscriptions.isEmpty && batch.inboundQoS2.isEmpty
            && batch.retained.isEmpty && batch.connectionWills.isEmpty && batch.replayMarks.isEmpty {
            if batch.ingest.isEmpty, case let (upserts, updates, deletes) = deliveryChanges(batch), updates.isEmpty, deletes.isEmpty {
                return queuedQuery(Array(batch.messages.values), upserts)
            }
            if batch.messages.isEmpty && batch.deliveries.isEmpty {
                let rounds = IngestRecord.rounds(batch.ingest)
                if rounds.count == 1 { return ingestQuery(rounds[0]) }
            }
        }
        return nil
    }

    private static func deliveryChanges(_ batch: StoreBatch)
        -> (upserts: [StoredDelivery], updates: [(StoreBatch.DeliveryKey, StoredDeliveryState, UInt16?)], deletes: [StoreBatch.DeliveryKey]) {
        var upserts: [StoredDelivery] = []
        var updates: [(StoreBatch.DeliveryKey, StoredDeliveryState, UInt16?)] = []
        var deletes: [StoreBatch.DeliveryKey] = []
        for (key, change) in batch.deliveries {
            switch change {
            case .upsert(let d): upserts.append(d)
            case .update(let state, let packetID): updates.append((key, state, packetID))
            case .delete: deletes.append(key)
            }
        }
        return (upserts, updates, deletes)
    }

    /// New message payloads and new (or re-saved) deliveries in one statement: there is no
    /// foreign key between the two tables, so their order within the statement does not matter.
    private static func queuedQuery(_ m: [StoredMessage], _ d: [StoredDelivery]) -> PostgresQuery {
        """
        WITH payloads AS (
            INSERT INTO message_payloads (id, topic, payload, qos, retain, properties, expires_at, publisher)
            SELECT id, topic, payload, qos, retain, properties, NULLIF(expires_at, -1), publisher
            FROM unnest(\(m.map(\.id))::int8[], \(m.map(\.topic))::text[], \(m.map(\.payload))::bytea[],
                        \(m.map { Int16($0.qos.rawValue) })::int2[], \(m.map(\.retain))::bool[],
                        \(m.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) })::bytea[],
                        \(m.map { $0.expiresAt ?? -1 })::int8[], \(m.map(\.publisher))::text[])
                AS t(id, topic, payload, qos, retain, properties, expires_at, publisher)
            ON CONFLICT (id) DO NOTHING
        )
        INSERT INTO session_messages (client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id)
        SELECT client_id, seq, message_id, qos, retain, NULLIF(subscription_ids, ''), NULLIF(share_name, ''), NULLIF(share_filter, ''),
               state, NULLIF(packet_id, 0)
        FROM unnest(\(d.map(\.clientID))::text[], \(d.map(\.sequence))::int8[], \(d.map(\.messageID))::int8[],
                    \(d.map { Int16($0.qos.rawValue) })::int2[], \(d.map(\.retain))::bool[],
                    \(d.map { StoreCoding.encode(identifiers: $0.subscriptionIdentifiers) ?? "" })::text[],
                    \(d.map { $0.shareGroup?.name ?? "" })::text[], \(d.map { $0.shareGroup?.filter ?? "" })::text[],
                    \(d.map { Int16($0.state.rawValue) })::int2[], \(d.map { Int32($0.packetID ?? 0) })::int4[])
            AS t(client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id)
        ON CONFLICT (client_id, seq) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id
            WHERE session_messages.state <> 3
        """
    }

    /// The messages of a replayed batch that a node other than this one has already taken from
    /// their publisher: a device whose node went silent (cut off, frozen) while its spool held
    /// the message re-sent it elsewhere, that node queued it for the subscribers, and the
    /// replay's ingest found it stored (`duplicates`, of the batch's replayed records). Queued
    /// again, a QoS 2 subscriber would receive it twice (README "What the cluster promises under
    /// faults"). A message is matched to its record by publisher, topic and payload.
    static func takenElsewhere(_ batch: StoreBatch, duplicates: [IngestRecord]) -> Set<Int64> {
        guard !duplicates.isEmpty else { return [] }
        var wanted: [String: [IngestRecord]] = [:]
        for record in duplicates { wanted[record.clientID, default: []].append(record) }
        var taken: Set<Int64> = []
        for message in batch.messages.values.sorted(by: { $0.id < $1.id }) {
            guard var records = wanted[message.publisher],
                  let index = records.firstIndex(where: { $0.topic == message.topic && $0.payload == message.payload }) else { continue }
            records.remove(at: index)
            wanted[message.publisher] = records
            taken.insert(message.id)
        }
        return taken
    }

    /// Payloads and deliveries (after sessions, which deliveries reference), but for the
    /// messages `leavingOut` names.
    private static func writeQueued(_ batch: StoreBatch, leavingOut taken: Set<Int64> = [], on connection: PostgresConnection,
                                    logger: Logger) async throws {
        var (upserts, updates, deletes) = deliveryChanges(batch)
        var messages = Array(batch.messages.values)
        if !taken.isEmpty {
            messages.removeAll { taken.contains($0.id) }
            upserts.removeAll { taken.contains($0.messageID) }
            logger.info("replay: \(taken.count) messages another node took from their publishers meanwhile are not queued again")
        }
        if !messages.isEmpty || !upserts.isEmpty {
            try await connection.query(queuedQuery(messages, upserts), logger: logger)
        }
        if !updates.isEmpty {
            try await connection.query("""
                UPDATE session_messages m SET state = t.state, packet_id = NULLIF(t.packet_id, 0)
                FROM unnest(\(updates.map(\.0.clientID))::text[], \(updates.map(\.0.sequence))::int8[],
                            \(updates.map { Int16($0.1.rawValue) })::int2[], \(updates.map { Int32($0.2 ?? 0) })::int4[])
                    AS t(client_id, seq, state, packet_id)
                WHERE m.client_id = t.client_id AND m.seq = t.seq AND m.state <> 3
                """, logger: logger)
        }
        if !deletes.isEmpty {
            // A delivery whose row is not there (yet: another node's spool holds it, or its
            // commit runs now) leaves the row as ended (state 3), which the row, when it comes,
            // does not overwrite: the primary key orders the two writes (migration 0010).
            try await connection.query("""
                WITH t AS (SELECT * FROM unnest(\(deletes.map(\.clientID))::text[], \(deletes.map(\.sequence))::int8[]) AS t(client_id, seq)),
                gone AS (DELETE FROM session_messages m USING t WHERE m.client_id = t.client_id AND m.seq = t.seq AND m.state <> 3
                         RETURNING m.client_id, m.seq)
                INSERT INTO session_messages (client_id, seq, message_id, qos, retain, state, ended_at)
                SELECT t.client_id, t.seq, 0, 0, false, 3, now() FROM t
                WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.client_id = t.client_id AND g.seq = t.seq)
                  AND EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = t.client_id)
                ON CONFLICT (client_id, seq) DO UPDATE SET state = 3, ended_at = now()
                """, logger: logger)
        }
    }

    private static func writeInbound(_ batch: StoreBatch, on connection: PostgresConnection, logger: Logger) async throws {
        let adds = batch.inboundQoS2.filter { $0.value }.map(\.key)
        let removes = batch.inboundQoS2.filter { !$0.value }.map(\.key)
        if !adds.isEmpty {
            try await connection.query("""
                INSERT INTO inbound_qos2 (client_id, packet_id) SELECT * FROM unnest(\(adds.map(\.clientID))::text[], \(adds.map { Int32($0.packetID) })::int4[])
                ON CONFLICT DO NOTHING
                """, logger: logger)
        }
        if !removes.isEmpty {
            try await connection.query("""
                DELETE FROM inbound_qos2 q USING unnest(\(removes.map(\.clientID))::text[], \(removes.map { Int32($0.packetID) })::int4[]) AS t(client_id, packet_id)
                WHERE q.client_id = t.client_id AND q.packet_id = t.packet_id
                """, logger: logger)
        }
    }

    private static func writeRetained(_ batch: StoreBatch, on connection: PostgresConnection, logger: Logger) async throws {
        let sets = batch.retained.values.filter { $0.payload.readableBytes > 0 }
        let deletes = batch.retained.values.filter { $0.payload.readableBytes == 0 }.map(\.topic)
        if !deletes.isEmpty {
            try await connection.query("DELETE FROM retained WHERE topic = ANY(\(deletes))", logger: logger)
        }
        if !sets.isEmpty {
            let m = Array(sets)
            try await connection.query("""
                INSERT INTO retained (topic, payload, qos, properties, expires_at, publisher, message_id)
                SELECT topic, payload, qos, properties, NULLIF(expires_at, -1), publisher, message_id
                FROM unnest(\(m.map(\.topic))::text[], \(m.map(\.payload))::bytea[], \(m.map { Int16($0.qos.rawValue) })::int2[],
                            \(m.map { ByteBuffer(bytes: StoreCoding.encode($0.properties)) })::bytea[], \(m.map { $0.expiresAt ?? -1 })::int8[],
                            \(m.map(\.publisher))::text[], \(m.map(\.id))::int8[])
                    AS t(topic, payload, qos, properties, expires_at, publisher, message_id)
                ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, properties = excluded.properties,
                    expires_at = excluded.expires_at, publisher = excluded.publisher, message_id = excluded.message_id
                """, logger: logger)
        }
    }

    public func load() async throws -> StoredState {
        try await load(only: nil)
    }

    /// A row of `sessions` (`SELECT *`).
    static func session(_ row: PostgresRow) throws -> StoredSession {
        let r = row.makeRandomAccess()
        var will: MQTTWill?
        if let topic = try r["will_topic"].decode(String?.self) {
            let properties = try r["will_properties"].decode(ByteBuffer?.self) ?? ByteBuffer()
            will = MQTTWill(topic: topic, payload: try r["will_payload"].decode(ByteBuffer?.self) ?? ByteBuffer(),
                            qos: MQTTQoS(rawValue: UInt8(try r["will_qos"].decode(Int16?.self) ?? 0)) ?? .atMostOnce,
                            retain: try r["will_retain"].decode(Bool?.self) ?? false,
                            properties: try StoreCoding.decodeProperties(Array(properties.readableBytesView), context: .will))
        }
        var session = StoredSession(
            clientID: try r["client_id"].decode(String.self),
            version: MQTTProtocolVersion(rawValue: UInt8(try r["protocol_version"].decode(Int16.self))) ?? .v5,
            expiryInterval: UInt32(clamping: try r["expiry_interval"].decode(Int64.self)),
            expiresAt: try r["expires_at"].decode(Int64?.self), connected: try r["connected"].decode(Bool.self),
            username: try r["username"].decode(String?.self), will: will, willDueAt: try r["will_due_at"].decode(Int64?.self))
        session.epoch = try r["claim_epoch"].decode(Int64.self)
        return session
    }

    /// A row of `message_payloads`.
    static func payload(_ row: PostgresRow) throws -> StoredMessage {
        let r = row.makeRandomAccess()
        return StoredMessage(
            id: try r["id"].decode(Int64.self), topic: try r["topic"].decode(String.self),
            payload: try r["payload"].decode(ByteBuffer.self),
            qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce, retain: try r["retain"].decode(Bool.self),
            properties: try StoreCoding.decodeProperties(Array((try r["properties"].decode(ByteBuffer?.self) ?? ByteBuffer()).readableBytesView), context: .publish),
            expiresAt: try r["expires_at"].decode(Int64?.self), publisher: try r["publisher"].decode(String.self))
    }

    /// Everything a restart restores, or (with `only`) what one client's session holds.
    func load(only clientID: String?) async throws -> StoredState {
        var state = StoredState()
        // One client's session; in a cluster a node's own sessions; else every session.
        let clients: PostgresQuery = if let clientID {
            "SELECT \(clientID)::text"
        } else if let ownerNode {
            "SELECT client_id FROM sessions WHERE owner_node = \(ownerNode)"
        } else {
            "SELECT client_id FROM sessions"
        }
        func scoped(_ select: String, order: String = "") -> PostgresQuery {
            var query = clients
            query.sql = "\(select) WHERE client_id IN (\(clients.sql)) \(order)"
            return query
        }
        for try await row in try await client.query(scoped("SELECT * FROM sessions"), logger: logger) {
            state.sessions.append(try Self.session(row))
        }
        for try await row in try await client.query(scoped("SELECT * FROM subscriptions"), logger: logger) {
            let r = row.makeRandomAccess()
            let filter = try MQTTTopicFilter(try r["filter"].decode(String.self))
            let request = MQTTSubscription(
                filter: filter, qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce,
                noLocal: try r["no_local"].decode(Bool.self), retainAsPublished: try r["retain_as_published"].decode(Bool.self),
                retainHandling: .init(rawValue: UInt8(try r["retain_handling"].decode(Int16.self))) ?? .sendOnSubscribe)
            let identifier = try r["subscription_id"].decode(Int32?.self).map(Int.init)
            state.subscriptions.append(StoredSubscription(clientID: try r["client_id"].decode(String.self),
                                                          subscription: Subscription(request, identifier: identifier)))
        }
        try await loadDeliveries(of: clients, into: &state)
        // The ingest bridge's entries of clients without a stored session too.
        let inbound: PostgresQuery = clientID.map { "SELECT client_id, packet_id FROM inbound_qos2 WHERE client_id = \($0)" }
            ?? "SELECT client_id, packet_id FROM inbound_qos2"
        for try await (clientID, packetID) in try await client.query(inbound, logger: logger).decode((String, Int32).self) {
            state.inboundQoS2.append((clientID, UInt16(clamping: packetID)))
        }
        if clientID != nil { return state }
        state.retained = try await loadRetained()
        return state
    }

    /// The queued and in-flight deliveries of the clients `clients` selects, with their payloads.
    func loadDeliveries(of clients: PostgresQuery, into state: inout StoredState) async throws {
        var payloads = clients
        payloads.sql = "SELECT * FROM message_payloads p WHERE p.id IN (SELECT message_id FROM session_messages WHERE client_id IN (\(clients.sql)) AND state <> 3)"
        // Read whole, then decoded: a consumer slower than the socket leaves postgres-nio 1.33's row
        // stream waiting for demand, and a connection closed then stops the process (its
        // RowStreamStateMachine.channelReadComplete precondition). Claims read large queues.
        for row in try await client.query(payloads, logger: logger).collect() {
            state.messages.append(try Self.payload(row))
        }
        var deliveries = clients
        deliveries.sql = "SELECT * FROM session_messages WHERE client_id IN (\(clients.sql)) AND state <> 3 ORDER BY client_id, seq"
        for row in try await client.query(deliveries, logger: logger).collect() {
            let r = row.makeRandomAccess()
            let shareName = try r["share_name"].decode(String?.self)
            let shareFilter = try r["share_filter"].decode(String?.self)
            state.deliveries.append(StoredDelivery(
                clientID: try r["client_id"].decode(String.self), sequence: try r["seq"].decode(Int64.self),
                messageID: try r["message_id"].decode(Int64.self),
                qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atLeastOnce, retain: try r["retain"].decode(Bool.self),
                subscriptionIdentifiers: StoreCoding.decodeIdentifiers(try r["subscription_ids"].decode(String?.self)),
                shareGroup: shareName.flatMap { name in shareFilter.map { ShareGroupKey(name: name, filter: $0) } },
                state: StoredDeliveryState(rawValue: Int(try r["state"].decode(Int16.self))) ?? .queued,
                packetID: try r["packet_id"].decode(Int32?.self).map { UInt16(clamping: $0) }))
        }
    }
}

extension PostgresStore {
    public func loadRetained() async throws -> [StoredMessage] {
        var retained: [StoredMessage] = []
        for try await row in try await client.query("SELECT * FROM retained", logger: logger) {
            let r = row.makeRandomAccess()
            retained.append(StoredMessage(
                id: try r["message_id"].decode(Int64.self), topic: try r["topic"].decode(String.self),
                payload: try r["payload"].decode(ByteBuffer.self),
                qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce, retain: true,
                properties: try StoreCoding.decodeProperties(Array((try r["properties"].decode(ByteBuffer?.self) ?? ByteBuffer()).readableBytesView), context: .publish),
                expiresAt: try r["expires_at"].decode(Int64?.self), publisher: try r["publisher"].decode(String.self)))
        }
        return retained
    }
}

extension PostgresStore {
    /// Writes ingest records by the rule of docs/architecture.md, "The ingest bridge" in one statement per round:
    /// QoS 1 rows exist only where the `ingest_dedup` upsert changed the last entry (the
    /// database decides, so a re-send reaching another node at the same moment waits on the row
    /// lock and then sees the first copy); QoS 2 rows only where the `inbound_qos2` entry is new.
    /// Returns the replayed QoS 1 and 2 records that made no row (stored already).
    @discardableResult
    static func writeIngest(_ records: [IngestRecord], on connection: PostgresConnection, logger: Logger) async throws -> [IngestRecord] {
        var duplicates: [IngestRecord] = []
        for round in IngestRecord.rounds(records) where !round.isEmpty {
            let replayed = round.contains { $0.replayed && $0.dedup != .none }
            let rows = try await connection.query(ingestQuery(round, returning: replayed), logger: logger)
            guard replayed else { continue }
            var stored: Set<String> = []
            for try await (client, packet) in rows.decode((String, Int32?).self) { stored.insert("\(client)\u{0}\(packet ?? 0)") }
            duplicates += round.filter { $0.replayed && $0.dedup != .none && !stored.contains("\($0.clientID)\u{0}\($0.packetID ?? 0)") }
        }
        return duplicates
    }

    /// The statement of one round of ingest records (each de-duplication key once); `returning`:
    /// it answers the (client id, packet id) of every row it stored.
    static func ingestQuery(_ round: [IngestRecord], returning: Bool = false) -> PostgresQuery {
        let kind = round.map { r -> Int16 in
            switch r.dedup { case .none: 0; case .qos1: 1; case .qos2: 2 }
        }
        let dupish = round.map { r -> Bool in
            if case .qos1(let dup, let contentOnly) = r.dedup { return dup || contentOnly }
            return false
        }
        return """
        WITH input AS (
            SELECT * FROM unnest(\(Array(0..<Int64(round.count)))::int8[], \(round.map(\.receivedAt))::int8[],
                \(round.map(\.clientID))::text[], \(round.map { $0.username ?? "" })::text[], \(round.map { $0.username != nil })::bool[],
                \(round.map { Int32($0.packetID ?? 0) })::int4[], \(round.map(\.topic))::text[], \(round.map(\.payload))::bytea[],
                \(round.map { IngestText.json($0.payload) ?? "" })::text[], \(round.map { Int16($0.qos) })::int2[],
                \(round.map(\.retain))::bool[], \(round.map { $0.contentType ?? "" })::text[],
                \(round.map { IngestText.userProperties($0.userProperties) ?? "" })::text[],
                \(round.map { ByteBuffer(bytes: $0.contentHash) })::bytea[], \(round.map(\.nodeID))::text[],
                \(kind)::int2[], \(dupish)::bool[], \(round.map(\.replayed))::bool[], \(round.map(\.mayBeStored))::bool[])
            AS t(ord, received_ms, client_id, username, has_username, packet_id, topic, payload, payload_json, qos, retain,
                 content_type, user_properties, content_hash, node_id, kind, dupish, replayed, may_be_stored)
        ),
        q1 AS (
            INSERT INTO ingest_dedup (client_id, packet_id, content_hash, last_dup, received_at, replayed)
            SELECT client_id, packet_id, content_hash, dupish, received_ms, replayed FROM input WHERE kind = 1
            ON CONFLICT (client_id, packet_id) DO UPDATE
                SET content_hash = excluded.content_hash, last_dup = excluded.last_dup, received_at = excluded.received_at,
                    replayed = excluded.replayed
                WHERE NOT (ingest_dedup.content_hash = excluded.content_hash
                           AND (excluded.last_dup OR (excluded.replayed AND excluded.received_at <= ingest_dedup.received_at)))
            RETURNING client_id, packet_id
        ),
        d2 AS (
            INSERT INTO ingest_dedup (client_id, packet_id, content_hash, last_dup, received_at, replayed)
            SELECT client_id, packet_id, content_hash, false, received_ms, replayed FROM input WHERE kind = 2
            ON CONFLICT (client_id, packet_id) DO UPDATE
                SET content_hash = excluded.content_hash, last_dup = false, received_at = excluded.received_at, replayed = excluded.replayed
                WHERE NOT (ingest_dedup.content_hash = excluded.content_hash
                           AND excluded.replayed AND excluded.received_at <= ingest_dedup.received_at)
            RETURNING client_id, packet_id
        ),
        q2 AS (
            INSERT INTO inbound_qos2 (client_id, packet_id)
            SELECT client_id, packet_id FROM input i
            WHERE kind = 2 AND (NOT i.replayed OR EXISTS (SELECT 1 FROM d2 WHERE d2.client_id = i.client_id AND d2.packet_id = i.packet_id))
            ON CONFLICT DO NOTHING
            RETURNING client_id, packet_id
        )
        INSERT INTO messages (received_at, client_id, username, packet_id, topic, payload, payload_json, qos, retain,
                              content_type, user_properties, content_hash, node_id)
        SELECT to_timestamp(received_ms / 1000.0), client_id, CASE WHEN has_username THEN username END, NULLIF(packet_id, 0),
               topic, payload, NULLIF(payload_json, '')::jsonb, qos, retain, NULLIF(content_type, ''),
               NULLIF(user_properties, '')::jsonb, content_hash, node_id
        FROM input i
        WHERE (i.kind = 0 AND NOT (i.may_be_stored AND EXISTS (
                   SELECT 1 FROM messages m WHERE m.client_id = i.client_id AND m.received_at = to_timestamp(i.received_ms / 1000.0)
                       AND m.topic = i.topic AND m.content_hash = i.content_hash)))
           OR (i.kind = 1 AND EXISTS (SELECT 1 FROM q1 WHERE q1.client_id = i.client_id AND q1.packet_id = i.packet_id))
           OR (i.kind = 2 AND EXISTS (SELECT 1 FROM q2 WHERE q2.client_id = i.client_id AND q2.packet_id = i.packet_id))
        ORDER BY i.ord
        \(unescaped: returning ? "RETURNING client_id, packet_id" : "")
        """
    }

    /// Keeps daily partitions of `messages` from yesterday to three days ahead, and drops the
    /// ones wholly before `cutoff` (ingest.retention); rows older than the cutoff in the default
    /// partition are deleted.
    public func enforceRetention(before cutoff: Int64?, now: Int64) async throws -> Int {
        let day: Int64 = 86_400_000
        let today = now / day * day
        for start in stride(from: today - day, through: today + 3 * day, by: Int64.Stride(day)) {
            let name = "messages_\(IngestText.sqliteTimestamp(start).prefix(10).replacingOccurrences(of: "-", with: ""))"
            let from = IngestText.sqliteTimestamp(start)
            let to = IngestText.sqliteTimestamp(start + day)
            do {
                try await client.query(PostgresQuery(unsafeSQL: """
                    CREATE TABLE IF NOT EXISTS \(name) PARTITION OF messages FOR VALUES FROM ('\(from)+00') TO ('\(to)+00')
                    """), logger: logger)
            } catch {
                // Rows of that day already sit in the default partition (e.g. the first start
                // after a long stop): they stay there; the next days get their partitions.
                logger.debug("partition \(name) not created: \(String(reflecting: error))")
            }
        }
        guard let cutoff else { return 0 }
        var dropped = 0
        let rows = try await client.query("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'messages' AND c.relname ~ '^messages_[0-9]{8}$'
                AND c.relnamespace = p.relnamespace
            """, logger: logger)
        var names: [String] = []
        for try await name in rows.decode(String.self) { names.append(name) }
        let cutoffDay = IngestText.sqliteTimestamp(cutoff / day * day).prefix(10).replacingOccurrences(of: "-", with: "")
        for name in names where String(name.dropFirst("messages_".count)) < cutoffDay {
            try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(name)"), logger: logger)
            dropped += 1
        }
        let bound = Double(cutoff) / 1000
        try await client.query("DELETE FROM messages_default WHERE received_at < to_timestamp(\(bound))", logger: logger)
        try await client.query("DELETE FROM ingest_dedup WHERE received_at < \(cutoff)", logger: logger)
        return dropped
    }
}
