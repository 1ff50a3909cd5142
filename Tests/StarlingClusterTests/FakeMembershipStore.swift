import NIOCore
import StarlingCore
import StarlingTesting
import Synchronization

/// The membership table in memory, aged by a manual clock as PostgreSQL ages it by its own:
/// a row is live while its lease has not run out since its last renewal.
final class FakeMembershipStore: MembershipStore {
    struct Row {
        var incarnation: Int64
        var renewedAt: NIODeadline
        var lease: TimeAmount
        var state: NodeState
        var clients: Int
    }
    struct Table {
        var rows: [String: Row] = [:]
        /// Set: every call fails as a store out of reach does.
        var unreachable = false
        /// Incarnations whose process is alive and renews its row every second.
        var renewing: Set<Int64> = []
        var claims = 0
    }
    struct Unreachable: Error {}

    let clock: ManualClock
    let table = Mutex(Table())

    init(clock: ManualClock) { self.clock = clock }

    func row(_ nodeID: String) -> Row? { table.withLock { $0.rows[nodeID] } }

    /// A row another process holds, renewed now.
    func hold(_ nodeID: String, incarnation: Int64, lease: TimeAmount) {
        let now = clock.now()
        table.withLock { $0.rows[nodeID] = Row(incarnation: incarnation, renewedAt: now, lease: lease, state: .alive, clients: 0) }
    }

    func claimNode(_ node: NodeRegistration, lease: TimeAmount) async throws -> NodeClaim {
        let now = clock.now()
        return try table.withLock { t in
            guard !t.unreachable else { throw Unreachable() }
            t.claims += 1
            if var held = t.rows[node.nodeID], held.incarnation != node.incarnation, held.incarnation != node.predecessor {
                if t.renewing.contains(held.incarnation), now - held.renewedAt >= .seconds(1) { held.renewedAt = now }
                t.rows[node.nodeID] = held
                if held.state != .left, now < held.renewedAt + held.lease {
                    return .held(by: Self.record(node.nodeID, held, now: now))
                }
            }
            t.rows[node.nodeID] = Row(incarnation: node.incarnation, renewedAt: now, lease: lease, state: .alive, clients: 0)
            return .claimed
        }
    }

    func renewNode(_ nodeID: String, incarnation: Int64, lease: TimeAmount, state: NodeState, clients: Int) async throws -> Bool {
        let now = clock.now()
        return try table.withLock { t in
            guard !t.unreachable else { throw Unreachable() }
            guard t.rows[nodeID]?.incarnation == incarnation else { return false }
            t.rows[nodeID] = Row(incarnation: incarnation, renewedAt: now, lease: lease, state: state, clients: clients)
            return true
        }
    }

    func nodes() async throws -> [NodeRecord] {
        let now = clock.now()
        return try table.withLock { t in
            guard !t.unreachable else { throw Unreachable() }
            return t.rows.keys.sorted().map { Self.record($0, t.rows[$0]!, now: now) }
        }
    }

    func allocateIDBlock() async throws -> Int64 { 1 }

    static func record(_ nodeID: String, _ row: Row, now: NIODeadline) -> NodeRecord {
        NodeRecord(
            nodeID: nodeID, incarnation: row.incarnation, mqttAddress: "mqtt", clusterAddress: "cluster", httpAddress: nil,
            state: row.state, clients: row.clients, leaseAgeMilliseconds: (now - row.renewedAt).nanoseconds / 1_000_000,
            leaseRemainingMilliseconds: (row.renewedAt + row.lease - now).nanoseconds / 1_000_000)
    }
}
