import Foundation
import MQTTCodec
import NIOCore
import PostgresNIO
import StarlingCore
@testable import StarlingPostgres
import Testing

/// Session claims across nodes on the real PostgreSQL (migration 0006): the claim with the
/// later epoch owns the row whatever order the writes run in, and a node's writes of the row
/// count only while no later claim took it.
@Suite("Claim epochs (PostgreSQL)", .enabled(if: TestPostgres.isConfigured))
struct ClaimEpochTests {
    static func session(_ clientID: String, epoch: Int64, username: String) -> StoreOperation {
        var s = StoredSession(clientID: clientID, version: .v5, expiryInterval: 600, connected: true, username: username)
        s.epoch = epoch
        return .saveSession(s)
    }

    /// `node` claims `clientID`'s session and writes its row under the claim: the claim's epoch.
    static func own(_ clientID: String, on node: PostgresStore) async throws -> Int64 {
        let epoch = try await node.ownership.markOwned(clientID)
        try await node.apply([session(clientID, epoch: epoch, username: "u")])
        return epoch
    }

    /// The store as node `owner` sees it.
    static func node(_ owner: String, _ client: PostgresClient) -> PostgresStore {
        PostgresStore(client: client, logger: TestPostgres.logger, ownerNode: owner)
    }

    /// A fresh schema whose session "sub" node n2 holds (epoch 1); `body` gets n2, the store and
    /// the client.
    static func withSubscriberOnN2(_ body: (PostgresStore, PostgresStore, PostgresClient) async throws -> Void) async throws {
        try await TestPostgres.withStore { store, client in
            let holder = node("n2", client)
            try await holder.apply([session("sub", epoch: 1, username: "u")])
            try await body(holder, store, client)
        }
    }

    /// Nodes a and b on one fresh schema.
    static func withNodes(_ body: (PostgresStore, PostgresStore, PostgresClient) async throws -> Void) async throws {
        try await TestPostgres.withStore { _, client in try await body(Self.node("a", client), Self.node("b", client), client) }
    }

    static func row(_ client: PostgresClient) async throws -> (owner: String?, epoch: Int64, username: String?) {
        let rows = try await client.query(
            "SELECT owner_node, claim_epoch, username FROM sessions WHERE client_id = 'dev'", logger: TestPostgres.logger)
        for try await (owner, epoch, username) in rows.decode((String?, Int64, String?).self) { return (owner, epoch, username) }
        Issue.record("no session row")
        return (nil, 0, nil)
    }

    @Test("epochs grow; the later claim owns the row, the earlier one's writes change nothing")
    func laterClaimWins() async throws {
        try await Self.withNodes { a, b, client in
            // Two claims of a client with no row yet: b's epoch is the later one.
            let epochA = try await a.ownership.markOwned("dev")
            let epochB = try await b.ownership.markOwned("dev")
            #expect(epochB > epochA && epochA > 0)
            // a writes first (its row is new), then b: b's later epoch takes the row.
            try await a.apply([Self.session("dev", epoch: epochA, username: "from-a")])
            try await b.apply([Self.session("dev", epoch: epochB, username: "from-b")])
            #expect(try await Self.row(client) == ("b", epochB, "from-b"))
            // a's late write (a node that has not yet heard of b's claim) changes nothing.
            try await a.apply([Self.session("dev", epoch: epochA, username: "late-a")])
            #expect(try await Self.row(client) == ("b", epochB, "from-b"))
            // A claim's update never moves the row back to an earlier epoch.
            let epochA2 = try await a.ownership.markOwned("dev")
            #expect(try await Self.row(client) == ("a", epochA2, "from-b"))
            try await b.apply([Self.session("dev", epoch: epochB, username: "stale-b")])
            #expect(try await Self.row(client).username == "from-b")
        }
    }
}

extension ClaimEpochTests {
    static func record(_ clientID: String, packetID: UInt16, payload: String, dup: Bool = false) -> IngestRecord {
        IngestRecord(
            receivedAt: 1_700_000_000_000, clientID: clientID, username: nil, packetID: packetID, topic: "s/1",
            payload: ByteBuffer(string: payload), qos: 1, retain: false, contentType: nil, userProperties: [],
            contentHash: Array(payload.utf8), nodeID: "a", dedup: .qos1(dup: dup, contentOnly: false))
    }

    static func rows(_ client: PostgresClient, payload: String) async throws -> Int {
        let rows = try await client.query(
            "SELECT count(*)::int8 FROM messages WHERE payload = \(ByteBuffer(string: payload))",
            logger: TestPostgres.logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    @Test("G2: a frozen node's late commit of what its superseded connection received is left out, in the same transaction")
    func fencedIngest() async throws {
        try await Self.withNodes { a, b, client in
            let epochA = try await Self.own("dev", on: a)
            // Held by a: its connection's writes commit.
            let fenceA = SessionFence(clientID: "dev", epoch: epochA)
            #expect(try await a.commit([.fenced(fenceA, [.ingest(Self.record("dev", packetID: 1, payload: "one"))])]).isEmpty)
            // b takes the client over; the device re-sends packet 2 there with DUP and b stores it.
            let epochB = try await b.ownership.markOwned("dev")
            let fenceB = SessionFence(clientID: "dev", epoch: epochB)
            #expect(try await b.commit([.fenced(fenceB, [.ingest(Self.record("dev", packetID: 2, payload: "two", dup: true))])]).isEmpty)
            // a resumes and commits the original it read late (DUP 0): left out, and said so;
            // another client's row in the same batch is written.
            let stale = try await a.commit([
                .fenced(fenceA, [.ingest(Self.record("dev", packetID: 2, payload: "two")), .addInboundQoS2(clientID: "dev", packetID: 5)]),
                .ingest(Self.record("other", packetID: 1, payload: "three"))
            ])
            #expect(stale == [fenceA])
            #expect(try await Self.rows(client, payload: "one") == 1)
            #expect(try await Self.rows(client, payload: "two") == 1)
            #expect(try await Self.rows(client, payload: "three") == 1)
            let inbound = try await client.query(
                "SELECT count(*)::int8 FROM inbound_qos2 WHERE client_id = 'dev'", logger: TestPostgres.logger)
            for try await count in inbound.decode(Int64.self) { #expect(count == 0) }
        }
    }
}

extension ClaimEpochTests {
    @Test(
        "G2, [MQTT-4.3.3]: a QoS 2 PUBLISH taken for new while the store holds its entry (another node stored it after this node read the session): the fenced commit is left out; once released, the id is new again"
    )
    func repeatedQoS2() async throws {
        try await Self.withNodes { a, b, client in
            let epoch = try await Self.own("dev", on: b)
            var record = Self.record("dev", packetID: 4, payload: "once")
            record.dedup = .qos2
            record.qos = 2
            // Node a's replay stores the message with its entry after node b read the session.
            try await a.apply([.ingest(record), .addInboundQoS2(clientID: "dev", packetID: 4)])
            let fence = SessionFence(clientID: "dev", epoch: epoch)
            var again = record
            again.nodeID = "b"
            let stale = try await b.commit([
                .fenced(fence, [.ingest(again), .addInboundQoS2(clientID: "dev", packetID: 4)]),
                .ingest(Self.record("other", packetID: 1, payload: "kept"))
            ])
            #expect(stale == [fence])
            #expect(try await Self.rows(client, payload: "once") == 1)
            #expect(try await Self.rows(client, payload: "kept") == 1)
            // The client's next CONNECT on b reads the entry; its PUBREL frees the id, and a new
            // message under it is stored.
            try await b.apply([.removeInboundQoS2(clientID: "dev", packetID: 4)])
            var next = Self.record("dev", packetID: 4, payload: "next")
            next.dedup = .qos2
            next.qos = 2
            #expect(try await b.commit([.fenced(fence, [.ingest(next), .addInboundQoS2(clientID: "dev", packetID: 4)])]).isEmpty)
            #expect(try await Self.rows(client, payload: "next") == 1)
        }
    }

    @Test("a claim names the node that held the row before; a node replaying its spool says so")
    func previousOwnerAndReplay() async throws {
        try await Self.withNodes { a, b, client in
            let first = try await a.ownership.claimOwnership("dev")
            #expect(first.previousOwner == nil)
            try await a.apply([Self.session("dev", epoch: first.epoch, username: "u")])
            #expect(try await a.ownership.claimOwnership("dev").previousOwner == nil)  // its own row
            #expect(try await b.ownership.claimOwnership("dev").previousOwner == "a")
            #expect(try await !b.ownership.isReplaying(node: "a"))
            try await client.query(
                "INSERT INTO spool_replays (spool_id, through, node_id, pending) VALUES ('s-a', 0, 'a', true)",
                logger: TestPostgres.logger)
            // Waited for only while that node holds its lease (one cut off or dead replays nothing soon).
            #expect(try await !b.ownership.isReplaying(node: "a"))
            try await client.query(
                "INSERT INTO nodes (node_id, incarnation, mqtt_address, cluster_address, lease_until) VALUES ('a', 1, 'a:1', 'a:2', now() + interval '5 seconds')",
                logger: TestPostgres.logger)
            #expect(try await b.ownership.isReplaying(node: "a"))
        }
    }
}

extension ClaimEpochTests {
    @Test("a delivery that ended before its row arrived (another node's spool, or a commit at the same moment) keeps the row out")
    func endedBeforeTheRow() async throws {
        try await Self.withSubscriberOnN2 { holder, store, client in
            let publisher = Self.node("n1", client)
            let message = StoredMessage(
                id: 9, topic: "t", payload: ByteBuffer(string: "m"), qos: .exactlyOnce, retain: false, properties: [],
                expiresAt: nil, publisher: "p")
            let row = StoredDelivery(
                clientID: "sub", sequence: 77, messageID: 9, qos: .exactlyOnce, retain: false,
                subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil)
            // The holder's delete first (its replay), the publisher's row after (its replay).
            try await holder.apply([
                .updateDelivery(clientID: "sub", sequence: 77, state: .released, packetID: 4),
                .deleteDelivery(clientID: "sub", sequence: 77)
            ])
            try await publisher.apply([.saveMessage(message), .saveDelivery(row)])
            #expect(try await store.ownership.claimSession("sub").deliveries.isEmpty)
            // In the usual order the row goes.
            try await publisher.apply([
                .saveDelivery(
                    StoredDelivery(
                        clientID: "sub", sequence: 78, messageID: 9, qos: .exactlyOnce,
                        retain: false, subscriptionIdentifiers: [], shareGroup: nil,
                        state: .queued, packetID: nil))
            ])
            #expect(try await store.ownership.claimSession("sub").deliveries.map(\.sequence) == [78])
            try await holder.apply([.deleteDelivery(clientID: "sub", sequence: 78)])
            #expect(try await store.ownership.claimSession("sub").deliveries.isEmpty)
        }
    }
}

extension ClaimEpochTests {
    @Test("a replay does not queue again what another node took from the publisher meanwhile (QoS 2 once at subscribers)")
    func replayLeavesOutWhatAnotherNodeQueued() async throws {
        try await Self.withSubscriberOnN2 { holder, store, client in
            let silent = Self.node("n1", client)
            let other = Self.node("n3", client)
            func published(_ id: Int64, _ payload: String, packetID: UInt16, sequence: Int64, at receivedAt: Int64, replayed: Bool)
                -> [StoreOperation]
            {
                var record = IngestRecord(
                    receivedAt: receivedAt, clientID: "dev", username: nil, packetID: packetID, topic: "s/1",
                    payload: ByteBuffer(string: payload), qos: 2, retain: false, contentType: nil, userProperties: [],
                    contentHash: Array(payload.utf8), nodeID: replayed ? "n1" : "n3", dedup: .qos2)
                record.replayed = replayed
                return [
                    .ingest(record),
                    .saveMessage(
                        StoredMessage(
                            id: id, topic: "s/1", payload: ByteBuffer(string: payload), qos: .exactlyOnce, retain: false,
                            properties: [], expiresAt: nil, publisher: "dev")),
                    .saveDelivery(
                        StoredDelivery(
                            clientID: "sub", sequence: sequence, messageID: id, qos: .exactlyOnce, retain: false,
                            subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil))
                ]
            }
            // n1, cut off, spooled packets 7 and 8 and went silent; the device re-sent 7 through
            // n3, which stored it and queued it for the subscriber. Then n1 replays its spool.
            try await other.apply(published(20, "seven", packetID: 7, sequence: 200, at: 1_700_000_000_500, replayed: false))
            try await silent.apply(
                published(10, "seven", packetID: 7, sequence: 100, at: 1_700_000_000_000, replayed: true)
                    + published(11, "eight", packetID: 8, sequence: 101, at: 1_700_000_000_010, replayed: true))
            #expect(try await store.ownership.claimSession("sub").deliveries.map(\.sequence).sorted() == [101, 200])
            #expect(try await Self.rows(client, payload: "seven") == 1)
            #expect(try await Self.rows(client, payload: "eight") == 1)
        }
    }
}

extension ClaimEpochTests {
    @Test(
        "[MQTT-4.3.3] a replayed QoS 2 message another node stored and completed meanwhile: none of its copies is queued again (a payload per stored session of the node, one for the other nodes'), nor its entry entered again"
    )
    func replayLeavesOutEveryCopyAndTheEntry() async throws {
        try await TestPostgres.withStore { store, client in
            let silent = Self.node("n1", client)
            let other = Self.node("n3", client)
            try await other.apply([Self.session("sub", epoch: 1, username: "u"), Self.session("local", epoch: 1, username: "u")])
            func message(_ id: Int64) -> StoreOperation {
                .saveMessage(
                    StoredMessage(
                        id: id, topic: "s/1", payload: ByteBuffer(string: "seven"), qos: .exactlyOnce, retain: false, properties: [],
                        expiresAt: nil, publisher: "dev"))
            }
            func delivery(_ clientID: String, _ sequence: Int64, _ id: Int64) -> StoreOperation {
                .saveDelivery(
                    StoredDelivery(
                        clientID: clientID, sequence: sequence, messageID: id, qos: .exactlyOnce, retain: false,
                        subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil))
            }
            var record = Self.record("dev", packetID: 7, payload: "seven")
            (record.dedup, record.qos, record.receivedAt, record.nodeID) = (.qos2, 2, 1_700_000_000_500, "n3")
            // n1, cut off, spooled packet 7; the device re-sent it through n3, which stored it,
            // queued it for "sub" and freed the id at the PUBREL.
            try await other.apply([.ingest(record), message(20), delivery("sub", 200, 20), .addInboundQoS2(clientID: "dev", packetID: 7)])
            try await other.apply([.removeInboundQoS2(clientID: "dev", packetID: 7)])
            // n1's replay: its copy, fenced, routed to its own stored session and to "sub".
            (record.receivedAt, record.nodeID, record.replayed) = (1_700_000_000_000, "n1", true)
            let fence = SessionFence(clientID: "dev", epoch: 1, spooledAt: 1_700_000_000_000)
            try await silent.apply([
                .fenced(
                    fence,
                    [
                        .ingest(record), message(10), delivery("local", 100, 10), message(11), delivery("sub", 101, 11),
                        .addInboundQoS2(clientID: "dev", packetID: 7)
                    ])
            ])
            #expect(try await store.ownership.claimSession("sub").deliveries.map(\.sequence) == [200])
            #expect(try await store.ownership.claimSession("local").deliveries.isEmpty)
            #expect(try await Self.rows(client, payload: "seven") == 1)
            let inbound = try await client.query("SELECT count(*)::int8 FROM inbound_qos2", logger: TestPostgres.logger)
            for try await count in inbound.decode(Int64.self) { #expect(count == 0) }
        }
    }

    @Test(
        "an expired session no node holds goes with its unreleased QoS 2 entries (kept, they would swallow the client's next messages under those ids)"
    )
    func expiredSessionTakesItsEntries() async throws {
        try await Self.withNodes { a, _, client in
            var session = StoredSession(clientID: "gone", version: .v5, expiryInterval: 1, expiresAt: 1_000, connected: false)
            session.epoch = 1
            try await a.apply([.saveSession(session), .addInboundQoS2(clientID: "gone", packetID: 9)])
            try await client.query("UPDATE sessions SET owner_node = NULL WHERE client_id = 'gone'", logger: TestPostgres.logger)
            #expect(try await a.ownership.deleteExpiredSessions(now: 2_000) == ["gone"])
            let inbound = try await client.query("SELECT count(*)::int8 FROM inbound_qos2", logger: TestPostgres.logger)
            for try await count in inbound.decode(Int64.self) { #expect(count == 0) }
        }
    }

    @Test("G2: a spooled fence is stale when the first later claim came before the spooling, though the session moved on again since")
    func firstLaterClaimDecides() async throws {
        try await TestPostgres.withStore { _, client in
            let nodes = ["n1", "n2", "n3"].map { Self.node($0, client) }
            let first = try await Self.own("dev", on: nodes[0])
            let second = try await nodes[1].ownership.markOwned("dev")  // the device moved while n1 was frozen
            let third = try await nodes[2].ownership.markOwned("dev")  // and on again, later
            let recent = try await client.query("SELECT recent_claims FROM sessions WHERE client_id = 'dev'", logger: TestPostgres.logger)
            var pairs: [Int64] = []
            for try await claims in recent.decode([Int64].self) { pairs = claims }
            // The claims that took the row (the first made it, with its session).
            #expect(stride(from: 0, to: pairs.count, by: 2).map { pairs[$0] } == [second, third])
            // The claims' times, as they were: the second 5 s before n1 spooled, the third 100 ms before.
            let spooledAt: Int64 = 1_800_000_000_000
            try await client.query(
                """
                UPDATE sessions SET claimed_at = \(spooledAt - 100),
                    recent_claims = ARRAY[\(first), \(spooledAt - 9_000), \(second), \(spooledAt - 5_000), \(third), \(spooledAt - 100)]::bigint[]
                WHERE client_id = 'dev'
                """, logger: TestPostgres.logger)
            let fence = SessionFence(clientID: "dev", epoch: first, spooledAt: spooledAt)
            let stale = try await nodes[0].commit([.fenced(fence, [.ingest(Self.record("dev", packetID: 9, payload: "late"))])])
            #expect(stale == [fence])
            #expect(try await Self.rows(client, payload: "late") == 0)
            // A fence of the second claim: the first claim after it (the third) came after the spooling's margin.
            let kept = SessionFence(clientID: "dev", epoch: second, spooledAt: spooledAt)
            #expect(try await nodes[1].commit([.fenced(kept, [.ingest(Self.record("dev", packetID: 10, payload: "kept"))])]).isEmpty)
        }
    }
}

extension ClaimEpochTests {
    @Test(
        "G2/G7: a claim does not wait for a node frozen in the middle of a commit that holds the session's row: that transaction is ended (it aborts)"
    )
    func claimEndsAFrozenCommit() async throws {
        try await Self.withNodes { a, b, client in
            try await Self.withOwnConnection(client) { frozen in  // a pool would lend it again once ended
                let epochA = try await Self.own("dev", on: a)
                // Node a's commit, read FOR SHARE as its fenced writes do, then a frozen process.
                try await frozen.query("SET application_name = 'starling/frozen-node'", logger: TestPostgres.logger)
                try await frozen.query("BEGIN", logger: TestPostgres.logger)
                for try await _ in try await frozen.query(
                    "SELECT 1 FROM sessions WHERE client_id = 'dev' FOR SHARE", logger: TestPostgres.logger)
                {}
                let (epochB, previous) = try await b.ownership.claimOwnership("dev")
                #expect(epochB > epochA && previous == "a")
                // The claim's UPDATE got the row, so the frozen transaction has aborted: the
                // lock goes only with it.
            }
            #expect(try await Self.row(client).owner == "b")
        }
    }
}

extension ClaimEpochTests {
    @Test(
        "G1/G2: claims in one batch (a reconnect storm) give each row its own later epoch and name its previous owner, as claims alone would; the sessions are read in one go"
    )
    func batchClaim() async throws {
        try await Self.withNodes { a, b, client in
            for clientID in ["d1", "d2"] {
                let epoch = try await a.ownership.markOwned(clientID)
                var session = StoredSession(clientID: clientID, version: .v5, expiryInterval: 600, connected: true)
                session.epoch = epoch
                let subscription = Subscription(
                    MQTTSubscription(filter: try MQTTTopicFilter("s/\(clientID)"), qos: .atLeastOnce), identifier: nil)
                try await a.apply([
                    .saveSession(session), .saveSubscription(StoredSubscription(clientID: clientID, subscription: subscription))
                ])
            }
            let before = try await b.ownership.claimOwnership(of: ["d2"])
            // d1 held by a, d2 by b already (its own claim: no previous owner), d3 has no row yet.
            let claims = try await b.ownership.claimOwnership(of: ["d1", "d2", "d3"])
            #expect(Set(claims.keys) == ["d1", "d2", "d3"])
            #expect(claims["d1"]?.previousOwner == "a" && claims["d2"]?.previousOwner == nil && claims["d3"]?.previousOwner == nil)
            let epochs = ["d1", "d2", "d3"].compactMap { claims[$0]?.epoch }
            #expect(Set(epochs).count == 3 && epochs.allSatisfy { $0 > before["d2"]?.epoch ?? .max })
            let owners = try await client.rows(
                "SELECT client_id, owner_node, claim_epoch FROM sessions WHERE client_id IN ('d1', 'd2') ORDER BY client_id",
                logger: TestPostgres.logger)
            let decoded = try owners.map { try $0.decode((String, String?, Int64).self) }
            #expect(decoded.map(\.1) == ["b", "b"] && decoded.map(\.2) == [claims["d1"]?.epoch, claims["d2"]?.epoch])
            let states = try await b.ownership.claimSessions(["d1", "d2", "d3"])
            #expect(
                states["d1"]?.sessions.map(\.clientID) == ["d1"] && states["d1"]?.subscriptions.map(\.subscription.filter.raw) == ["s/d1"])
            #expect(states["d2"]?.subscriptions.map(\.subscription.filter.raw) == ["s/d2"])
            #expect(states["d3"].map { $0.sessions.isEmpty && $0.subscriptions.isEmpty } == true)
        }
    }
}

extension ClaimEpochTests {
    /// A connection outside `client`'s pool, to the same database and schema, closed after `body`.
    static func withOwnConnection(_ client: PostgresClient, _ body: (PostgresConnection) async throws -> Void) async throws {
        var schema = "public"
        for try await name in try await client.query("SELECT current_schema()", logger: TestPostgres.logger).decode(String.self) {
            schema = name
        }
        guard let url = TestPostgres.url, let pool = PostgresStore.configuration(url: url), let host = pool.host else {
            Issue.record("STARLING_TEST_POSTGRES_URL is not a postgres:// URL with a host")
            return
        }
        var configuration = PostgresConnection.Configuration(
            host: host, port: pool.port ?? 5432, username: pool.username, password: pool.password, database: pool.database, tls: .disable)
        configuration.options.additionalStartupParameters = [("search_path", schema)]
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: TestPostgres.logger)
        do {
            try await body(connection)
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// Waits until PostgreSQL reports `condition` (a boolean SQL expression), polling.
    static func until(_ condition: String, _ client: PostgresClient) async throws {
        while true {
            let rows = try await client.query(
                PostgresQuery(unsafeSQL: "SELECT coalesce((\(condition)), false)"), logger: TestPostgres.logger)
            for try await holds in rows.decode(Bool.self) where holds { return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test(
        "issue 20: a claim ends first a transaction idle on the session's row (a frozen node sends nothing), a busy one only after the longer wait"
    )
    func idleBlockersEndedFirst() async throws {
        try await TestPostgres.withStore { _, client in
            let a = Self.node("a", client)
            _ = try await Self.own("dev", on: a)
            for idle in [false, true] {
                let mark = UUID().uuidString
                // The holder on a connection of its own: a pool would lend it again once ended.
                try await Self.withOwnConnection(client) { holder in
                    try await holder.query("SET application_name = 'starling/holder'", logger: TestPostgres.logger)
                    try await holder.query("BEGIN", logger: TestPostgres.logger)
                    for try await _ in try await holder.query(
                        "SELECT 1 FROM sessions WHERE client_id = 'dev' FOR SHARE", logger: TestPostgres.logger)
                    {}
                    // Busy: a statement still running in the transaction; idle: nothing more sent.
                    let busy = idle ? nil : Task { _ = try? await holder.query("SELECT pg_sleep(60)", logger: TestPostgres.logger) }
                    let claim = Task {
                        try await client.query(
                            PostgresQuery(unsafeSQL: "/* claim \(mark) */ SELECT 1 FROM sessions WHERE client_id = 'dev' FOR UPDATE"),
                            logger: TestPostgres.logger)
                    }
                    let holderState =
                        idle
                        ? "state = 'idle in transaction' AND state_change < clock_timestamp() - interval '150 milliseconds'"
                        : "state = 'active' AND query LIKE 'SELECT pg_sleep%'"
                    try await Self.until(
                        """
                        EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '/* claim \(mark) */%' AND wait_event_type = 'Lock')
                        AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'starling/holder' AND \(holderState))
                        """, client)
                    let endedIfIdle = try await PostgresOwnership.endBlockers(
                        ofStatementMarked: mark, idleOnly: true, client: client, logger: TestPostgres.logger)
                    #expect(endedIfIdle == (idle ? 1 : 0))
                    if !idle {
                        #expect(
                            try await PostgresOwnership.endBlockers(ofStatementMarked: mark, client: client, logger: TestPostgres.logger)
                                == 1)
                    }
                    _ = try await claim.value  // the row is free: the claim's statement went through
                    await busy?.value
                }
            }
        }
    }
}
