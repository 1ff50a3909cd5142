public import NIOCore
import Foundation
import PostgresNIO
public import StarlingCore

/// Membership rows (migration 0005): leases are compared with `now()` of the database, the one
/// clock every node shares. A cluster node runs these statements on a line of their own
/// (`PostgresLine`), so renewals (and with them readiness and the partition verdict) never wait
/// for a pool that is still backing off after an outage (G7); tools run them through the pool.
public final class PostgresMembership: MembershipStore {
    let runner: MembershipStatements
    let line: PostgresLine?

    public init(line: PostgresLine) {
        self.line = line
        let logger = line.logger
        self.runner = MembershipStatements { [line] query in try await line.run { try await $0.rows(query, logger: logger) } }
    }

    public init(store: PostgresStore) {
        self.line = nil
        self.runner = MembershipStatements { [store] query in try await store.client.rows(query, logger: store.logger) }
    }

    /// Closes the line for good (at shutdown).
    public func close() async { await line?.close() }

    public func claimNode(_ node: NodeRegistration, lease: TimeAmount) async throws -> NodeClaim {
        try await runner.claimNode(node, lease: lease)
    }

    public func renewNode(_ nodeID: String, incarnation: Int64, lease: TimeAmount, state: NodeState, clients: Int) async throws -> Bool {
        try await runner.renewNode(nodeID, incarnation: incarnation, lease: lease, state: state, clients: clients)
    }

    public func allocateIDBlock() async throws -> Int64 { try await runner.allocateIDBlock() }

    public func nodes() async throws -> [NodeRecord] { try await runner.nodes() }
}

/// The membership statements, over whatever runs them (the pool or a line).
struct MembershipStatements: Sendable {
    /// Runs a statement and reads its rows whole (`PostgresConnection.rows`).
    let rows: @Sendable (PostgresQuery) async throws -> [PostgresRow]

    func claimNode(_ node: NodeRegistration, lease: TimeAmount) async throws -> NodeClaim {
        let milliseconds = lease.nanoseconds / 1_000_000
        let claimed = try await rows(
            """
            INSERT INTO nodes AS n (node_id, incarnation, mqtt_address, cluster_address, http_address, state, clients,
                                    started_at, renewed_at, lease_until, held_since)
            VALUES (\(node.nodeID), \(node.incarnation), \(node.mqttAddress), \(node.clusterAddress), \(node.httpAddress),
                    'alive', 0, now(), now(), now() + \(milliseconds)::bigint * interval '1 millisecond', now())
            ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, mqtt_address = excluded.mqtt_address,
                cluster_address = excluded.cluster_address, http_address = excluded.http_address, state = 'alive', clients = 0,
                started_at = now(), renewed_at = now(), lease_until = excluded.lease_until, held_since = now()
            WHERE n.lease_until <= now() OR n.state = 'left' OR n.incarnation = excluded.incarnation
               OR n.incarnation = \(node.predecessor ?? 0)
            RETURNING 1
            """)
        if !claimed.isEmpty { return .claimed }
        guard let holder = try await nodes().first(where: { $0.nodeID == node.nodeID }) else {
            return try await claimNode(node, lease: lease)  // the holder left between the two statements
        }
        return .held(by: holder)
    }

    func renewNode(_ nodeID: String, incarnation: Int64, lease: TimeAmount, state: NodeState, clients: Int) async throws -> Bool {
        let milliseconds = lease.nanoseconds / 1_000_000
        return try await !rows(
            """
            UPDATE nodes SET renewed_at = now(), lease_until = now() + \(milliseconds)::bigint * interval '1 millisecond',
                held_since = CASE WHEN lease_until > now() THEN coalesce(held_since, now()) ELSE now() END,
                state = \(state.rawValue), clients = \(clients)
            WHERE node_id = \(nodeID) AND incarnation = \(incarnation)
            RETURNING 1
            """
        ).isEmpty
    }

    func allocateIDBlock() async throws -> Int64 {
        for row in try await rows("SELECT nextval('id_blocks')") { return try row.decode(Int64.self) }
        throw ClusterStoreError(message: "nextval(id_blocks) returned no row")
    }

    func nodes() async throws -> [NodeRecord] {
        try await rows(
            """
            SELECT node_id, incarnation, mqtt_address, cluster_address, http_address, state, clients,
                   (extract(epoch FROM now() - renewed_at) * 1000)::bigint AS age,
                   (extract(epoch FROM lease_until - now()) * 1000)::bigint AS remaining
            FROM nodes ORDER BY node_id
            """
        ).map { row in
            let r = row.makeRandomAccess()
            return NodeRecord(
                nodeID: try r["node_id"].decode(String.self), incarnation: try r["incarnation"].decode(Int64.self),
                mqttAddress: try r["mqtt_address"].decode(String.self), clusterAddress: try r["cluster_address"].decode(String.self),
                httpAddress: try r["http_address"].decode(String?.self),
                state: NodeState(rawValue: try r["state"].decode(String.self)) ?? .alive, clients: Int(try r["clients"].decode(Int32.self)),
                leaseAgeMilliseconds: try r["age"].decode(Int64.self), leaseRemainingMilliseconds: try r["remaining"].decode(Int64.self))
        }
    }
}

struct ClusterStoreError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
