public import Logging
public import NIOCore
public import StarlingCore
import Synchronization

/// What the partition check needs of this node's lease, read each second.
public struct LeaseView: Sendable {
    public var held: Bool
    public var until: NIODeadline?
    public var lastRenewal: NIODeadline?
    /// When the latest failed renewal started (`LeaseKeeper.peersReachingTheStore`).
    public var lastFailedAttempt: NIODeadline?
}

/// This node's membership of the cluster: it claims its node id in the shared store, renews
/// its lease every `LeaseKeeper.renewInterval`, and keeps the latest view of every node for the
/// operations endpoints. The lease only decides dead-node clean-up and readiness; takeovers of
/// sessions never wait for it (docs/architecture.md, "Cluster").
public final class ClusterMembership: Sendable {
    public let registration: NodeRegistration
    let store: any MembershipStore
    let logger: Logger
    /// The number of connected clients, reported with each renewal.
    let clientCount: @Sendable () async -> Int
    /// Where the lease's times are read and its waits are made (a manual clock in tests).
    let clock: any BrokerClock

    private struct State {
        var keeper: LeaseKeeper
        var view: [NodeRecord] = []
        var nodeState = NodeState.alive
        var renewals: UInt64 = 0
        var renewalFailures: UInt64 = 0
    }

    private let state: Mutex<State>

    public init(
        registration: NodeRegistration, store: any MembershipStore, lease: TimeAmount, logger: Logger,
        clock: any BrokerClock = SystemBrokerClock(), clientCount: @escaping @Sendable () async -> Int
    ) {
        (self.clock, self.registration, self.store, self.logger, self.clientCount) = (clock, registration, store, logger, clientCount)
        self.state = Mutex(State(keeper: LeaseKeeper(lease: lease)))
    }

    /// A live node already uses this node id.
    public struct NodeIDInUse: Error, CustomStringConvertible {
        public var holder: NodeRecord
        public var description: String {
            "node id \(holder.nodeID) is in use by a live node (cluster \(holder.clusterAddress), MQTT \(holder.mqttAddress)); every live node needs its own server.node_id"
        }
    }

    /// Claims the node id. A row of another process whose lease has not expired yet may be a
    /// node that just died (a restart after kill -9): the claim waits for that lease, and fails
    /// only when the holder keeps renewing it, i.e. is alive.
    public func join() async throws {
        var lease: TimeAmount { state.withLock { $0.keeper.lease } }
        var previous: NodeRecord?
        while true {
            let start = clock.now()
            switch try await store.claimNode(registration, lease: lease) {
            case .claimed:
                state.withLock { $0.keeper.renewed(startedAt: start) }
                logger.notice("joined the cluster as \(registration.nodeID) (cluster address \(registration.clusterAddress))")
                await refreshView()
                return
            case .held(let holder):
                if let previous, Self.isRenewing(previous: previous, current: holder) { throw NodeIDInUse(holder: holder) }
                if previous == nil {
                    logger.notice(
                        "node id \(registration.nodeID) is held by \(holder.clusterAddress) for another \(holder.leaseRemainingMilliseconds) ms; waiting to see whether it is alive"
                    )
                }
                previous = holder
                try await clock.sleep(for: .milliseconds(max(100, min(holder.leaseRemainingMilliseconds, 250))))
            }
        }
    }

    /// Whether the holder of a row renewed it between two reads: a new incarnation, or a
    /// renewal more recent than the last one seen.
    static func isRenewing(previous: NodeRecord, current: NodeRecord) -> Bool {
        current.incarnation != previous.incarnation || current.leaseAgeMilliseconds < previous.leaseAgeMilliseconds
    }

    /// Renews the lease until cancelled.
    public func run() async {
        while !Task.isCancelled {
            let interval = state.withLock { $0.keeper.renewInterval }
            try? await clock.sleep(for: interval)
            if Task.isCancelled { return }
            await renew()
        }
    }

    /// One renewal, then a fresh view of the nodes.
    func renew() async {
        let start = clock.now()
        let (nodeState, lease) = state.withLock { ($0.nodeState, $0.keeper.lease) }
        let clients = await clientCount()
        do {
            if try await store.renewNode(
                registration.nodeID, incarnation: registration.incarnation, lease: lease, state: nodeState, clients: clients)
            {
                let recovered = state.withLock { s in
                    defer { s.keeper.renewed(startedAt: start); s.renewals += 1 }
                    return s.keeper.lastFailure
                }
                if let recovered { logger.notice("cluster lease renewed again (after: \(recovered))") }
            } else {
                state.withLock {
                    $0.keeper.lost("another process took node id \(registration.nodeID) over"); $0.renewalFailures += 1
                }
                logger.critical("another process took node id \(registration.nodeID) over: this node is no longer a member of the cluster")
            }
        } catch {
            let first = state.withLock { s in
                defer { s.keeper.failed("\(error)", startedAt: start); s.renewalFailures += 1 }
                return s.keeper.lastFailure == nil
            }
            if first { logger.error("cannot renew the cluster lease: \(error)") }
        }
        await refreshView()
    }

    /// Whether this node holds its lease now (by its own clock, from its last renewal): read on
    /// a timer of its own, since a renewal may hang on a database that does not answer.
    /// See `LeaseKeeper.heldThroughALease`: only then may this node judge others dead.
    public var heldThroughALease: Bool { state.withLock { $0.keeper.heldThroughALease(at: clock.now()) } }

    public var lease: LeaseView {
        state.withLock {
            LeaseView(
                held: $0.keeper.isHeld(at: clock.now()), until: $0.keeper.heldUntil, lastRenewal: $0.keeper.lastRenewal,
                lastFailedAttempt: $0.keeper.lastFailedAttempt)
        }
    }

    func refreshView() async {
        guard let nodes = try? await store.nodes() else { return }
        state.withLock { $0.view = nodes }
        onView(nodes)
    }

    /// Called with every fresh view of the nodes (the links dial new peers).
    private let onViewStorage = Mutex<(@Sendable ([NodeRecord]) -> Void)?>(nil)
    public func onView(_ body: @escaping @Sendable ([NodeRecord]) -> Void) { onViewStorage.withLock { $0 = body } }
    private func onView(_ nodes: [NodeRecord]) { onViewStorage.withLock { $0 }?(nodes) }

    /// Announced with the next renewal (draining at shutdown).
    public func announce(_ nodeState: NodeState) async {
        state.withLock { $0.nodeState = nodeState }
        await renew()
    }

    /// Gives the lease up: the row says `left`, so nobody waits for it to expire.
    public func leave() async {
        state.withLock { $0.nodeState = .left }
        _ = try? await store.renewNode(registration.nodeID, incarnation: registration.incarnation, lease: .zero, state: .left, clients: 0)
    }

    // MARK: What the operations endpoints report

    /// The nodes as last read from the store.
    public var nodes: [NodeRecord] { state.withLock { $0.view } }

    public var renewals: UInt64 { state.withLock { $0.renewals } }
    public var renewalFailures: UInt64 { state.withLock { $0.renewalFailures } }

    /// Whether this node's lease is held now, and what to say about it.
    public func leaseStatus() -> (held: Bool, detail: String) {
        let now = clock.now()
        return state.withLock { s in
            let others = s.view.filter { $0.nodeID != registration.nodeID }.map { "\($0.nodeID) \($0.status)" }
            let peers = others.isEmpty ? "no other nodes" : "nodes: " + others.joined(separator: ", ")
            if s.keeper.isHeld(at: now) {
                return (true, "lease held by \(registration.nodeID); \(peers)")
            }
            return (false, "lease of \(registration.nodeID) not renewed: \(s.keeper.lastFailure ?? "not joined yet"); \(peers)")
        }
    }
}
