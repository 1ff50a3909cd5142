import PostgresNIO
import StarlingCore
import StarlingPostgres
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

    static func row(_ client: PostgresClient) async throws -> (owner: String?, epoch: Int64, username: String?) {
        let rows = try await client.query("SELECT owner_node, claim_epoch, username FROM sessions WHERE client_id = 'dev'", logger: TestPostgres.logger)
        for try await (owner, epoch, username) in rows.decode((String?, Int64, String?).self) { return (owner, epoch, username) }
        Issue.record("no session row")
        return (nil, 0, nil)
    }

    @Test("epochs grow; the later claim owns the row, the earlier one's writes change nothing")
    func laterClaimWins() async throws {
        try await TestPostgres.withStore { _, client in
            let a = PostgresStore(client: client, logger: TestPostgres.logger, ownerNode: "a")
            let b = PostgresStore(client: client, logger: TestPostgres.logger, ownerNode: "b")
            // Two claims of a client with no row yet: b's epoch is the later one.
            let epochA = try await a.markOwned("dev")
            let epochB = try await b.markOwned("dev")
            #expect(epochB > epochA && epochA > 0)
            // a writes first (its row is new), then b: b's later epoch takes the row.
            try await a.apply([Self.session("dev", epoch: epochA, username: "from-a")])
            try await b.apply([Self.session("dev", epoch: epochB, username: "from-b")])
            #expect(try await Self.row(client) == ("b", epochB, "from-b"))
            // a's late write (a node that has not yet heard of b's claim) changes nothing.
            try await a.apply([Self.session("dev", epoch: epochA, username: "late-a")])
            #expect(try await Self.row(client) == ("b", epochB, "from-b"))
            // A claim's update never moves the row back to an earlier epoch.
            let epochA2 = try await a.markOwned("dev")
            #expect(try await Self.row(client) == ("a", epochA2, "from-b"))
            try await b.apply([Self.session("dev", epoch: epochB, username: "stale-b")])
            #expect(try await Self.row(client).username == "from-b")
        }
    }
}
