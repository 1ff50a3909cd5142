import MQTTCodec
import NIOCore
public import StarlingCore
import Testing

/// A store under test, with a way to read the `messages` rows that the store's own API does not
/// return (users read them with SQL; each adapter's test reads them with its own driver).
public struct StoreUnderTest: Sendable {
    public let store: any PersistentStore
    /// Every row of `messages`, in insertion (id) order.
    public let ingestedRows: @Sendable () async throws -> [IngestedRow]

    public init(store: any PersistentStore, ingestedRows: @escaping @Sendable () async throws -> [IngestedRow]) {
        (self.store, self.ingestedRows) = (store, ingestedRows)
    }
}

/// The columns of a `messages` row that the de-duplication rule decides about.
public struct IngestedRow: Sendable, Equatable, CustomStringConvertible {
    public var clientID: String
    public var packetID: Int?
    public var payload: String

    public init(clientID: String, packetID: Int?, payload: String) {
        (self.clientID, self.packetID, self.payload) = (clientID, packetID, payload)
    }

    public var description: String { "\(clientID)/\(packetID.map(String.init) ?? "-")/\(payload)" }
}

/// The storage conformance suite: every adapter runs these same checks (SQLite and PostgreSQL).
/// Each check gets a fresh, migrated store.
public enum StoreConformance {
    public typealias Check = @Sendable (StoreUnderTest) async throws -> Void

    public static let checks: [(name: String, check: Check)] =
        [
            ("migrations are idempotent", plain(migrationsTwice)),
            ("a session round-trips with its will", plain(sessionRoundTrip)),
            ("subscriptions are saved, replaced and deleted", plain(subscriptions)),
            ("deliveries keep order, state and payload, stored once", plain(deliveries)),
            ("deleting a session deletes what it owns", plain(deleteCascades)),
            ("inbound QoS 2 entries are added and removed", plain(inboundQoS2)),
            ("retained messages are set, replaced and deleted", plain(retained)),
            ("a batch touching one key several times keeps the last change", plain(batchFolding)),
            ("a failing batch changes nothing", plain(atomicity)),
            ("garbage collection removes unreferenced payloads only", plain(garbage)),
            ("ping answers through the write path, after writes too", plain(ping)),
            ("users are saved, replaced, listed by name and deleted", plain(users))
        ] + IngestConformance.checks

    /// A check that needs only the store's own API.
    static func plain(_ check: @escaping @Sendable (any PersistentStore) async throws -> Void) -> Check {
        { subject in try await check(subject.store) }
    }

    static func message(_ id: Int64, topic: String = "t", payload: String = "p", qos: MQTTQoS = .atLeastOnce) -> StoredMessage {
        StoredMessage(
            id: id, topic: topic, payload: ByteBuffer(string: payload), qos: qos, retain: false,
            properties: [.contentType("text/plain"), .userProperty("k", "v")], expiresAt: 1_900_000_000_000, publisher: "pub")
    }

    static func session(_ id: String, connected: Bool = false) -> StoredSession {
        StoredSession(clientID: id, version: .v5, expiryInterval: 3600, expiresAt: 1_800_000_000_000, connected: connected, username: "u")
    }

    static func delivery(_ client: String, _ seq: Int64, message: Int64, state: StoredDeliveryState = .queued, packetID: UInt16? = nil)
        -> StoredDelivery
    {
        StoredDelivery(
            clientID: client, sequence: seq, messageID: message, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [3, 4],
            shareGroup: seq % 2 == 0 ? ShareGroupKey(name: "g", filter: "t/#") : nil, state: state, packetID: packetID)
    }

    static func subscription(_ client: String, _ filter: String, qos: MQTTQoS = .atLeastOnce) -> StoredSubscription {
        StoredSubscription(
            clientID: client,
            subscription: Subscription(
                MQTTSubscription(
                    filter: try! MQTTTopicFilter(filter), qos: qos, noLocal: true, retainAsPublished: true, retainHandling: .sendIfNew),
                identifier: 12))
    }

    static func migrationsTwice(_ store: any PersistentStore) async throws {
        try await store.migrate()
        let state = try await store.load()
        #expect(state.sessions.isEmpty)
    }

    static func sessionRoundTrip(_ store: any PersistentStore) async throws {
        var s = session("c1", connected: true)
        s.will = MQTTWill(
            topic: "will/c1", payload: ByteBuffer(string: "bye"), qos: .exactlyOnce, retain: true,
            properties: [.willDelayInterval(30), .userProperty("a", "b")])
        s.willDueAt = 1_700_000_000_123
        try await store.apply([.saveSession(s)])
        let loaded = try await store.load().sessions
        #expect(loaded == [s])
        s.connected = false
        s.will = nil
        try await store.apply([.saveSession(s)])
        #expect(try await store.load().sessions == [s])
    }

    static func subscriptions(_ store: any PersistentStore) async throws {
        try await store.apply([
            .saveSession(session("c1")), .saveSubscription(subscription("c1", "a/+")),
            .saveSubscription(subscription("c1", "$share/g/b/#"))
        ])
        try await store.apply([
            .saveSubscription(subscription("c1", "a/+", qos: .exactlyOnce)), .deleteSubscription(clientID: "c1", filter: "$share/g/b/#")
        ])
        let loaded = try await store.load().subscriptions
        #expect(loaded == [subscription("c1", "a/+", qos: .exactlyOnce)])
    }

    static func deliveries(_ store: any PersistentStore) async throws {
        try await store.apply([
            .saveSession(session("c1")), .saveSession(session("c2")), .saveMessage(message(10)),
            .saveDelivery(delivery("c1", 2, message: 10)), .saveDelivery(delivery("c1", 1, message: 10)),
            .saveDelivery(delivery("c2", 1, message: 10))
        ])
        try await store.apply([
            .updateDelivery(clientID: "c1", sequence: 1, state: .sent, packetID: 7),
            .updateDelivery(clientID: "c1", sequence: 2, state: .released, packetID: 9)
        ])
        let state = try await store.load()
        #expect(state.messages == [message(10)])
        #expect(
            state.deliveries == [
                delivery("c1", 1, message: 10, state: .sent, packetID: 7),
                delivery("c1", 2, message: 10, state: .released, packetID: 9),
                delivery("c2", 1, message: 10)
            ])
        try await store.apply([.deleteDelivery(clientID: "c1", sequence: 1)])
        #expect(try await store.load().deliveries.count == 2)
    }

    static func deleteCascades(_ store: any PersistentStore) async throws {
        try await store.apply([
            .saveSession(session("c1")), .saveSubscription(subscription("c1", "x")), .saveMessage(message(1)),
            .saveDelivery(delivery("c1", 1, message: 1)), .addInboundQoS2(clientID: "c1", packetID: 5),
            .saveSession(session("c2")), .saveSubscription(subscription("c2", "x"))
        ])
        try await store.apply([.deleteSession(clientID: "c1")])
        let state = try await store.load()
        #expect(state.sessions.map(\.clientID) == ["c2"])
        #expect(state.subscriptions.map(\.clientID) == ["c2"])
        #expect(state.deliveries.isEmpty)
        #expect(state.inboundQoS2.isEmpty)
    }

    static func inboundQoS2(_ store: any PersistentStore) async throws {
        try await store.apply([
            .addInboundQoS2(clientID: "c1", packetID: 1), .addInboundQoS2(clientID: "c1", packetID: 2),
            .addInboundQoS2(clientID: "c1", packetID: 2)
        ])
        try await store.apply([.removeInboundQoS2(clientID: "c1", packetID: 1)])
        let entries = try await store.load().inboundQoS2
        #expect(entries.map(\.clientID) == ["c1"] && entries.map(\.packetID) == [2])
    }

    static func retained(_ store: any PersistentStore) async throws {
        var first = message(1, topic: "r/1", payload: "one")
        first.retain = true
        var second = message(2, topic: "r/2", payload: "two")
        second.retain = true
        try await store.apply([.setRetained(first), .setRetained(second)])
        var replaced = message(3, topic: "r/1", payload: "uno")
        replaced.retain = true
        try await store.apply([
            .setRetained(replaced),
            .setRetained(
                StoredMessage(
                    id: 4, topic: "r/2", payload: ByteBuffer(), qos: .atMostOnce,
                    retain: true, properties: [], expiresAt: nil, publisher: "p"))
        ])
        let loaded = try await store.load().retained
        #expect(loaded == [replaced])
    }

    static func batchFolding(_ store: any PersistentStore) async throws {
        // Two copies of one key in one batch (an upsert twice) and save+update+delete of one delivery.
        try await store.apply([
            .saveSession(session("c1")), .saveSession(session("c1", connected: true)),
            .saveSubscription(subscription("c1", "a")), .saveSubscription(subscription("c1", "a", qos: .atMostOnce)),
            .saveMessage(message(1)), .saveMessage(message(1)),
            .saveDelivery(delivery("c1", 1, message: 1)), .updateDelivery(clientID: "c1", sequence: 1, state: .sent, packetID: 3),
            .saveDelivery(delivery("c1", 2, message: 1)), .deleteDelivery(clientID: "c1", sequence: 2),
            // A session deleted and created again within the batch keeps only what follows.
            .saveSession(session("c2")), .saveSubscription(subscription("c2", "old")), .deleteSession(clientID: "c2"),
            .saveSession(session("c2")), .saveSubscription(subscription("c2", "new"))
        ])
        let state = try await store.load()
        #expect(state.sessions.sorted { $0.clientID < $1.clientID } == [session("c1", connected: true), session("c2")])
        #expect(
            Set(state.subscriptions.map { "\($0.clientID) \($0.subscription.filter.raw) \($0.subscription.qos.rawValue)" }) == [
                "c1 a 0", "c2 new 1"
            ])
        #expect(state.deliveries == [delivery("c1", 1, message: 1, state: .sent, packetID: 3)])
    }

    static func atomicity(_ store: any PersistentStore) async throws {
        // A delivery for a session that does not exist breaks a foreign key: nothing of the batch stays.
        await #expect(throws: (any Error).self) {
            try await store.apply([.saveSession(session("ok")), .saveMessage(message(1)), .saveDelivery(delivery("missing", 1, message: 1))]
            )
        }
        let state = try await store.load()
        #expect(state.sessions.isEmpty)
        #expect(state.messages.isEmpty)
    }

    static func garbage(_ store: any PersistentStore) async throws {
        try await store.apply([
            .saveSession(session("c1")), .saveMessage(message(1)), .saveMessage(message(2)),
            .saveDelivery(delivery("c1", 1, message: 1))
        ])
        #expect(try await store.collectGarbage() == 1)
        #expect(try await store.load().messages.map(\.id) == [1])
    }

    static func ping(_ store: any PersistentStore) async throws {
        try await store.ping()
        try await store.apply([.saveSession(session("c1"))])
        try await store.ping()
        #expect(try await store.load().sessions.map(\.clientID) == ["c1"])
    }

    static func users(_ store: any PersistentStore) async throws {
        #expect(try await store.loadUsers().isEmpty)
        try await store.saveUser(StoredUser(username: "zoe", passwordHash: "h1"))
        try await store.saveUser(StoredUser(username: "ann", passwordHash: "h2"))
        try await store.saveUser(StoredUser(username: "zoe", passwordHash: "h3", scram: "s3"))
        #expect(
            try await store.loadUsers() == [
                StoredUser(username: "ann", passwordHash: "h2"), StoredUser(username: "zoe", passwordHash: "h3", scram: "s3")
            ])
        #expect(try await store.deleteUser("ann"))
        #expect(try await !store.deleteUser("ann"))
        #expect(try await store.loadUsers().map(\.username) == ["zoe"])
    }
}
