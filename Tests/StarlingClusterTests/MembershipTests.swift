import Logging
import NIOCore
@testable import StarlingCluster
import StarlingCore
import StarlingTesting
import Synchronization
import Testing

/// A node's membership (`ClusterMembership`): its node id claimed, its lease renewed and lost,
/// what it says of itself and of the others — against the membership table in memory, on a
/// manual clock (docs/architecture.md, "Cluster").
@Suite("Cluster membership, on a manual clock")
struct MembershipTests {
    static let lease = TimeAmount.seconds(3)

    static func member(_ nodeID: String, incarnation: Int64, _ store: FakeMembershipStore) -> ClusterMembership {
        ClusterMembership(
            registration: NodeRegistration(
                nodeID: nodeID, incarnation: incarnation, mqttAddress: "mqtt", clusterAddress: "cluster", httpAddress: nil),
            store: store, lease: lease, logger: Logger(label: "test"), clock: store.clock, clientCount: { 0 })
    }

    /// n1 joined on an empty table.
    static func joined() async throws -> (ManualClock, FakeMembershipStore, ClusterMembership) {
        let clock = ManualClock()
        let store = FakeMembershipStore(clock: clock)
        let member = Self.member("n1", incarnation: 1, store)
        try await member.join()
        return (clock, store, member)
    }

    /// A table whose n1 row another process (incarnation 1) holds, renewed now.
    static func heldByAnother() -> (ManualClock, FakeMembershipStore) {
        let clock = ManualClock()
        let store = FakeMembershipStore(clock: clock)
        store.hold("n1", incarnation: 1, lease: lease)
        return (clock, store)
    }

    /// `count` renewals a second apart.
    static func renew(_ member: ClusterMembership, _ clock: ManualClock, times count: Int) async {
        for _ in 0..<count {
            clock.advance(by: .seconds(1))
            await member.renew()
        }
    }

    @Test("a node id whose holder died (kill -9, no leave) is taken once the holder's lease has run out, not before")
    func joinWaitsForADeadHoldersLease() async throws {
        let (clock, store) = Self.heldByAnother()
        let start = clock.now()
        try await Self.member("n1", incarnation: 2, store).join()
        #expect(store.row("n1")?.incarnation == 2)
        #expect(clock.now() - start >= Self.lease)
        #expect(store.table.withLock { $0.claims } > 2)  // it asked again while waiting
    }

    @Test("a node id whose holder keeps renewing is refused: two live nodes never share an id")
    func joinRefusesALiveHolder() async throws {
        let (_, store) = Self.heldByAnother()
        store.table.withLock { $0.renewing = [1] }
        await #expect(throws: ClusterMembership.NodeIDInUse.self) { try await Self.member("n1", incarnation: 2, store).join() }
        #expect(store.row("n1")?.incarnation == 1)
    }

    @Test(
        "G7: the lease is held by the node's own clock from the start of its last renewal; renewals that fail let it lapse at its end; back, the node may judge others dead only after a whole lease of renewals"
    )
    func leaseLapsesAndComesBack() async throws {
        let (clock, store, member) = try await Self.joined()
        #expect(member.lease.held && !member.heldThroughALease)  // just joined: the peers may not have renewed since
        await Self.renew(member, clock, times: 3)
        #expect(member.heldThroughALease && member.renewals == 3)

        store.table.withLock { $0.unreachable = true }
        await Self.renew(member, clock, times: 2)  // 1 and 2 s after the last renewal
        #expect(member.lease.held && member.renewalFailures == 2)
        await Self.renew(member, clock, times: 1)  // 3 s: the lease has run out
        #expect(!member.lease.held && !member.heldThroughALease)
        let (held, detail) = member.leaseStatus()
        #expect(!held && detail.contains("not renewed"))

        store.table.withLock { $0.unreachable = false }
        await Self.renew(member, clock, times: 1)
        #expect(member.lease.held && !member.heldThroughALease)
        await Self.renew(member, clock, times: 2)
        #expect(!member.heldThroughALease)
        await Self.renew(member, clock, times: 1)
        #expect(member.heldThroughALease)
    }

    @Test("a row another process took over (after this node's lease ran out) ends the lease at once")
    func takenOver() async throws {
        let (_, store, member) = try await Self.joined()
        store.hold("n1", incarnation: 9, lease: Self.lease)
        await member.renew()
        #expect(!member.lease.held)
        #expect(member.leaseStatus().detail.contains("another process took node id n1 over"))
    }

    @Test(
        "the view of the nodes: a peer that stops renewing is dead once its lease ran out; a node that drains says so, and one that leaves frees its id at once"
    )
    func viewDrainAndLeave() async throws {
        let clock = ManualClock()
        let store = FakeMembershipStore(clock: clock)
        let n1 = Self.member("n1", incarnation: 1, store)
        let n2 = Self.member("n2", incarnation: 2, store)
        try await n1.join()
        try await n2.join()
        let views = RecordedViews()
        n1.onView { nodes in views.append(nodes.map(\.status)) }
        await n1.renew()
        #expect(n1.nodes.map(\.status) == ["alive", "alive"])
        await Self.renew(n1, clock, times: 3)  // n2 renews no more
        #expect(n1.nodes.map(\.status) == ["alive", "dead"])
        #expect(n1.leaseStatus().detail == "lease held by n1; nodes: n2 dead")
        #expect(views.all.last == ["alive", "dead"])

        await n1.announce(.draining)
        #expect(store.row("n1")?.state == .draining)
        await n1.leave()
        #expect(store.row("n1")?.state == .left)
        let start = clock.now()
        try await Self.member("n1", incarnation: 3, store).join()
        #expect(clock.now() == start && store.row("n1")?.incarnation == 3)  // no wait for a lease given up
    }
}

/// Views handed to `onView`, in order.
final class RecordedViews: Sendable {
    private let views = Mutex<[[String]]>([])
    func append(_ view: [String]) { views.withLock { $0.append(view) } }
    var all: [[String]] { views.withLock { $0 } }
}
