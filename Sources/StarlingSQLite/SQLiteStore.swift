import Foundation
import GRDB
import Logging
import MQTTCodec
import StarlingMigrations
import NIOCore
public import StarlingCore

/// The embedded store: SQLite through GRDB, in WAL mode, with prepared (cached) statements.
///
/// `synchronous = NORMAL` (the default) survives a process crash; `FULL` also survives a
/// power cut, at the cost of an fsync per commit.
public final class SQLiteStore: PersistentStore {
    public enum Synchronous: String, Sendable, CaseIterable {
        case normal = "NORMAL"
        case full = "FULL"
    }

    public let name = "sqlite"
    /// SQLite has one writer, so two batches never run at once; but a second batch queued behind
    /// the committing one (in order, see `singleWriter`) starts the moment it ends, with no hop
    /// back to the broker's loop in between.
    public let concurrentCommits = 2
    public let singleWriter = true
    public let path: String
    let pool: DatabasePool

    /// Opens (creating if needed) the database at `path`.
    public init(path: String, synchronous: Synchronous = .normal) throws {
        self.path = path
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
            try db.execute(sql: "PRAGMA busy_timeout = 5000")
        }
        configuration.foreignKeysEnabled = true
        // GRDB's default (.userInitiated) runs the writer above the broker's event loop on Linux
        // (nice -2): a commit then pre-empts message delivery on a shared core. Below it, the
        // loop answers first and the writer takes the rest of the core.
        configuration.qos = .background
        pool = try DatabasePool(path: path, configuration: configuration)
    }

    public func migrate() async throws {
        try await MigrationRunner.run(
            Migrations.sqlite, on: SQLiteMigrationTarget(pool: pool))
    }

    public func apply(_ operations: [StoreOperation]) async throws {
        let batch = StoreBatch(operations)
        guard !batch.isEmpty else { return }
        try await pool.write { db in try Self.write(batch, db) }
    }

    /// Writes a folded batch in the order foreign keys need: session deletions (cascading)
    /// first, then sessions, payloads, subscriptions, deliveries, inbound QoS 2, retained.
    static func write(_ batch: StoreBatch, _ db: Database) throws {
        for clientID in batch.resetSessions { try apply(.deleteSession(clientID: clientID), db) }
        for session in batch.sessions.values { try apply(.saveSession(session), db) }
        for message in batch.messages.values { try apply(.saveMessage(message), db) }
        for (key, change) in batch.subscriptions {
            switch change {
            case .upsert(let stored): try apply(.saveSubscription(stored), db)
            case .delete: try apply(.deleteSubscription(clientID: key.clientID, filter: key.filter), db)
            }
        }
        for (key, change) in batch.deliveries {
            switch change {
            case .upsert(let delivery): try apply(.saveDelivery(delivery), db)
            case .update(let state, let packetID):
                try apply(.updateDelivery(clientID: key.clientID, sequence: key.sequence, state: state, packetID: packetID), db)
            case .delete: try apply(.deleteDelivery(clientID: key.clientID, sequence: key.sequence), db)
            }
        }
        // Ingest before inbound QoS 2 entries: a QoS 2 row is stored with its entry.
        try writeIngest(batch.ingest, db)
        for (key, add) in batch.inboundQoS2 {
            try apply(
                add
                    ? .addInboundQoS2(clientID: key.clientID, packetID: key.packetID)
                    : .removeInboundQoS2(clientID: key.clientID, packetID: key.packetID), db)
        }
        for message in batch.retained.values { try apply(.setRetained(message), db) }
    }

    public func loadUsers() async throws -> [StoredUser] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT username, password_hash, scram_sha256 FROM users ORDER BY username").map {
                StoredUser(username: $0["username"], passwordHash: $0["password_hash"], scram: $0["scram_sha256"])
            }
        }
    }

    public func saveUser(_ user: StoredUser) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO users (username, password_hash, scram_sha256, updated_at) VALUES (?, ?, ?, datetime('now'))
                    ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, scram_sha256 = excluded.scram_sha256,
                        updated_at = excluded.updated_at
                    """, arguments: [user.username, user.passwordHash, user.scram])
        }
    }

    public func deleteUser(_ username: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM users WHERE username = ?", arguments: [username])
            return db.changesCount > 0
        }
    }

    public func ping() async throws {
        // Through the writer: a store that cannot commit (locked, read-only) fails here too.
        try await pool.write { db in try db.execute(sql: "SELECT 1") }
    }

    public func collectGarbage() async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    DELETE FROM message_payloads WHERE id NOT IN (SELECT message_id FROM session_messages)
                    """)
            return db.changesCount
        }
    }

    static func apply(_ operation: StoreOperation, _ db: Database) throws {
        switch operation {
        case .saveSession(let s):
            try saveSession(s, db)
        case .deleteSession(let clientID):
            try db.cachedStatement(sql: "DELETE FROM sessions WHERE client_id = ?").execute(arguments: [clientID])
            try db.cachedStatement(sql: "DELETE FROM inbound_qos2 WHERE client_id = ?").execute(arguments: [clientID])
        case .saveSubscription(let stored):
            try saveSubscription(stored, db)
        case .deleteSubscription(let clientID, let filter):
            try db.cachedStatement(sql: "DELETE FROM subscriptions WHERE client_id = ? AND filter = ?").execute(arguments: [
                clientID, filter
            ])
        case .saveMessage(let m):
            try db.cachedStatement(
                sql: """
                    INSERT INTO message_payloads (id, topic, payload, qos, retain, properties, expires_at, publisher)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING
                    """
            ).execute(arguments: [
                m.id, m.topic, Data(m.payload.readableBytesView), Int(m.qos.rawValue), m.retain,
                Data(StoreCoding.encode(m.properties)), m.expiresAt, m.publisher
            ])
        case .saveDelivery(let d):
            try saveDelivery(d, db)
        case .updateDelivery(let clientID, let sequence, let state, let packetID):
            try db.cachedStatement(sql: "UPDATE session_messages SET state = ?, packet_id = ? WHERE client_id = ? AND seq = ?")
                .execute(arguments: [state.rawValue, packetID.map { Int($0) }, clientID, sequence])
        case .deleteDelivery(let clientID, let sequence):
            try db.cachedStatement(sql: "DELETE FROM session_messages WHERE client_id = ? AND seq = ?").execute(arguments: [
                clientID, sequence
            ])
        case .addInboundQoS2(let clientID, let packetID):
            try db.cachedStatement(sql: "INSERT INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .execute(arguments: [clientID, Int(packetID)])
        case .removeInboundQoS2(let clientID, let packetID):
            try db.cachedStatement(sql: "DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?").execute(arguments: [
                clientID, Int(packetID)
            ])
        case .ingest(let record):
            try writeIngest([record], db)
        case .saveConnectionWill, .deleteConnectionWill:
            break  // a cluster's (PostgreSQL); a node alone publishes its wills itself
        case .markReplayed:
            break  // PostgreSQL's spool replay
        case .fenced(_, let guarded):
            for operation in guarded { try apply(operation, db) }  // one node: no later claim
        case .setRetained(let m):
            try setRetained(m, db)
        }
    }

    static func saveSession(_ s: StoredSession, _ db: Database) throws {
        let will = s.will
        try db.cachedStatement(
            sql: """
                INSERT INTO sessions (client_id, protocol_version, expiry_interval, expires_at, connected, username,
                    will_topic, will_payload, will_qos, will_retain, will_properties, will_due_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
                    expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at,
                    connected = excluded.connected, username = excluded.username, will_topic = excluded.will_topic,
                    will_payload = excluded.will_payload, will_qos = excluded.will_qos, will_retain = excluded.will_retain,
                    will_properties = excluded.will_properties, will_due_at = excluded.will_due_at,
                    updated_at = excluded.updated_at
                """
        ).execute(arguments: [
            s.clientID, Int(s.version.rawValue), Int64(s.expiryInterval), s.expiresAt, s.connected, s.username,
            will?.topic, will.map { Data($0.payload.readableBytesView) }, will.map { Int($0.qos.rawValue) }, will?.retain,
            will.map { Data(StoreCoding.encode($0.properties)) }, s.willDueAt, Int64(Date().timeIntervalSince1970 * 1000)
        ])
    }

    static func saveSubscription(_ stored: StoredSubscription, _ db: Database) throws {
        let sub = stored.subscription
        try db.cachedStatement(
            sql: """
                INSERT INTO subscriptions (client_id, filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
                    retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
                    subscription_id = excluded.subscription_id
                """
        ).execute(arguments: [
            stored.clientID, sub.filter.raw, Int(sub.qos.rawValue), sub.noLocal, sub.retainAsPublished,
            Int(sub.retainHandling.rawValue), sub.identifier
        ])
    }

    static func saveDelivery(_ d: StoredDelivery, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO session_messages (client_id, seq, message_id, qos, retain, subscription_ids, share_name, share_filter, state, packet_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (client_id, seq) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id
                """
        ).execute(arguments: [
            d.clientID, d.sequence, d.messageID, Int(d.qos.rawValue), d.retain,
            StoreCoding.encode(identifiers: d.subscriptionIdentifiers), d.shareGroup?.name, d.shareGroup?.filter,
            d.state.rawValue, d.packetID.map { Int($0) }
        ])
    }

    static func setRetained(_ m: StoredMessage, _ db: Database) throws {
        if m.payload.readableBytes == 0 {
            try db.cachedStatement(sql: "DELETE FROM retained WHERE topic = ?").execute(arguments: [m.topic])
        } else {
            try db.cachedStatement(
                sql: """
                    INSERT INTO retained (topic, payload, qos, properties, expires_at, publisher, message_id) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, properties = excluded.properties,
                        expires_at = excluded.expires_at, publisher = excluded.publisher, message_id = excluded.message_id
                    """
            ).execute(arguments: [
                m.topic, Data(m.payload.readableBytesView), Int(m.qos.rawValue), Data(StoreCoding.encode(m.properties)),
                m.expiresAt, m.publisher, m.id
            ])
        }
    }

    public func load() async throws -> StoredState {
        try await pool.read { db in
            var state = StoredState()
            for row in try Row.fetchAll(db, sql: "SELECT * FROM sessions") {
                var will: MQTTWill?
                if let topic: String = row["will_topic"] {
                    let payload: Data = row["will_payload"] ?? Data()
                    let properties: Data = row["will_properties"] ?? Data()
                    will = MQTTWill(
                        topic: topic, payload: ByteBuffer(bytes: payload),
                        qos: MQTTQoS(rawValue: UInt8(row["will_qos"] as Int)) ?? .atMostOnce,
                        retain: row["will_retain"] ?? false,
                        properties: try StoreCoding.decodeProperties(Array(properties), context: .will))
                }
                state.sessions.append(
                    StoredSession(
                        clientID: row["client_id"], version: MQTTProtocolVersion(rawValue: UInt8(row["protocol_version"] as Int)) ?? .v5,
                        expiryInterval: UInt32(clamping: row["expiry_interval"] as Int64), expiresAt: row["expires_at"],
                        connected: row["connected"], username: row["username"], will: will, willDueAt: row["will_due_at"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM subscriptions") {
                let filter = try MQTTTopicFilter(row["filter"] as String)
                var subscription = Subscription(
                    MQTTSubscription(
                        filter: filter, qos: MQTTQoS(rawValue: UInt8(row["qos"] as Int)) ?? .atMostOnce, noLocal: row["no_local"],
                        retainAsPublished: row["retain_as_published"],
                        retainHandling: .init(rawValue: UInt8(row["retain_handling"] as Int)) ?? .sendOnSubscribe),
                    identifier: row["subscription_id"])
                subscription.identifier = row["subscription_id"]
                state.subscriptions.append(StoredSubscription(clientID: row["client_id"], subscription: subscription))
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM message_payloads WHERE id IN (SELECT message_id FROM session_messages)") {
                state.messages.append(try Self.message(row))
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM session_messages ORDER BY client_id, seq") {
                let shareName: String? = row["share_name"]
                let shareFilter: String? = row["share_filter"]
                state.deliveries.append(
                    StoredDelivery(
                        clientID: row["client_id"], sequence: row["seq"], messageID: row["message_id"],
                        qos: MQTTQoS(rawValue: UInt8(row["qos"] as Int)) ?? .atLeastOnce, retain: row["retain"],
                        subscriptionIdentifiers: StoreCoding.decodeIdentifiers(row["subscription_ids"]),
                        shareGroup: shareName.flatMap { name in shareFilter.map { ShareGroupKey(name: name, filter: $0) } },
                        state: StoredDeliveryState(rawValue: row["state"]) ?? .queued,
                        packetID: (row["packet_id"] as Int?).map { UInt16(clamping: $0) }))
            }
            for row in try Row.fetchAll(db, sql: "SELECT client_id, packet_id FROM inbound_qos2") {
                state.inboundQoS2.append((row["client_id"], UInt16(clamping: row["packet_id"] as Int)))
            }
            for row in try Row.fetchAll(db, sql: "SELECT * FROM retained") {
                state.retained.append(
                    StoredMessage(
                        id: row["message_id"], topic: row["topic"], payload: ByteBuffer(bytes: row["payload"] as Data),
                        qos: MQTTQoS(rawValue: UInt8(row["qos"] as Int)) ?? .atMostOnce, retain: true,
                        properties: try StoreCoding.decodeProperties(Array(row["properties"] as Data? ?? Data()), context: .publish),
                        expiresAt: row["expires_at"], publisher: row["publisher"]))
            }
            return state
        }
    }

    static func message(_ row: Row) throws -> StoredMessage {
        StoredMessage(
            id: row["id"], topic: row["topic"], payload: ByteBuffer(bytes: row["payload"] as Data),
            qos: MQTTQoS(rawValue: UInt8(row["qos"] as Int)) ?? .atMostOnce, retain: row["retain"],
            properties: try StoreCoding.decodeProperties(Array(row["properties"] as Data? ?? Data()), context: .publish),
            expiresAt: row["expires_at"], publisher: row["publisher"])
    }
}
