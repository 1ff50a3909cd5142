public import MQTTCodec
public import NIOCore

/// What a node announces about itself in the membership table (docs/architecture.md, "Cluster").
public struct NodeRegistration: Sendable, Equatable {
    public var nodeID: String
    /// Random per process start: tells a restarted node from the process it replaces.
    public var incarnation: Int64
    public var mqttAddress: String
    /// What peers dial (`cluster.advertise`).
    public var clusterAddress: String
    public var httpAddress: String?
    /// The incarnation of this node's previous start on the same data directory, which this
    /// process holds locked (`DataDirectoryLock`): that process is gone, so its row is taken over
    /// at once instead of waiting for its lease to run out.
    public var predecessor: Int64?

    public init(
        nodeID: String, incarnation: Int64, mqttAddress: String, clusterAddress: String, httpAddress: String?,
        predecessor: Int64? = nil
    ) {
        (self.nodeID, self.predecessor, self.incarnation, self.mqttAddress) = (nodeID, predecessor, incarnation, mqttAddress)
        (self.clusterAddress, self.httpAddress) = (clusterAddress, httpAddress)
    }
}

/// A node's own account of itself, renewed with its lease.
public enum NodeState: String, Sendable, Codable {
    /// Serving.
    case alive
    /// Shutting down: clients are being moved elsewhere.
    case draining
    /// Stopped cleanly (its lease was given up).
    case left
}

/// A row of the membership table as one node reads it; ages are measured by the database's
/// clock, so nodes with skewed clocks agree on who is dead.
public struct NodeRecord: Sendable, Equatable, Codable {
    public var nodeID: String
    public var incarnation: Int64
    public var mqttAddress: String
    public var clusterAddress: String
    public var httpAddress: String?
    public var state: NodeState
    public var clients: Int
    /// Milliseconds since the node's last renewal.
    public var leaseAgeMilliseconds: Int64
    /// Milliseconds until the lease expires; zero or less: expired.
    public var leaseRemainingMilliseconds: Int64

    public init(
        nodeID: String, incarnation: Int64, mqttAddress: String, clusterAddress: String, httpAddress: String?,
        state: NodeState, clients: Int, leaseAgeMilliseconds: Int64, leaseRemainingMilliseconds: Int64
    ) {
        (self.nodeID, self.incarnation, self.mqttAddress, self.clusterAddress) = (nodeID, incarnation, mqttAddress, clusterAddress)
        (self.httpAddress, self.state, self.clients, self.leaseAgeMilliseconds) = (httpAddress, state, clients, leaseAgeMilliseconds)
        self.leaseRemainingMilliseconds = leaseRemainingMilliseconds
    }

    /// Alive or draining with an unexpired lease. A node whose lease expired is dead, whatever
    /// it last said.
    public var isLive: Bool { state != .left && leaseRemainingMilliseconds > 0 }

    /// What `ctl cluster nodes` and `/api/v1/nodes` print: alive, draining, dead or left.
    public var status: String {
        if state == .left { return "left" }
        return leaseRemainingMilliseconds > 0 ? state.rawValue : "dead"
    }
}

/// The outcome of claiming a node id in the membership table.
public enum NodeClaim: Sendable, Equatable {
    /// The row is ours (new, or the previous holder's lease had expired or was ours).
    case claimed
    /// Another process holds a live lease on this id: its row as read.
    case held(by: NodeRecord)
}

/// The store's side of membership: a small port of its own, not more requirements on
/// `PersistentStore`. Implemented by PostgreSQL (a cluster shares one database).
public protocol MembershipStore: Sendable {
    /// Creates or takes over the row of `node.nodeID` with a lease of `lease`, unless another
    /// incarnation holds a live lease on it.
    func claimNode(_ node: NodeRegistration, lease: TimeAmount) async throws -> NodeClaim
    /// Extends this incarnation's lease; false when the row is no longer ours (another process
    /// took the id over after our lease expired).
    func renewNode(_ nodeID: String, incarnation: Int64, lease: TimeAmount, state: NodeState, clients: Int) async throws -> Bool
    /// Every row, with ages by the database's clock.
    func nodes() async throws -> [NodeRecord]
    /// A value no other node start ever gets: the ids this node generates carry it above their
    /// counter (`Broker.generateIDs(inBlock:)`), so they never collide with another node's.
    func allocateIDBlock() async throws -> Int64
}

/// When a node may consider its own lease held, by its own monotonic clock: from the start of
/// the last renewal that succeeded, for the lease's duration. A renewal's start is used, not
/// its end, so the node gives up before the database thinks it has expired, never after.
public struct LeaseKeeper: Sendable {
    public let lease: TimeAmount
    /// How often to renew: a third of the lease, at most every second, so two renewals may be
    /// lost before the lease is.
    public var renewInterval: TimeAmount { min(.seconds(1), .nanoseconds(lease.nanoseconds / 3)) }
    public private(set) var heldUntil: NIODeadline?
    public private(set) var lastFailure: String?

    public init(lease: TimeAmount) {
        self.lease = lease
    }

    /// Since when the lease has been held without a gap.
    public private(set) var heldSince: NIODeadline?

    /// A renewal that started at `start` succeeded.
    public mutating func renewed(startedAt start: NIODeadline) {
        if !isHeld(at: start) { heldSince = start }
        heldUntil = start + lease
        lastFailure = nil
    }

    /// True when the lease has been held without a gap for a whole lease at least: every live
    /// peer has renewed its own since (after a database outage all leases lapse; a node that
    /// got its back first must not take the others for dead).
    public func heldThroughALease(at now: NIODeadline) -> Bool {
        guard isHeld(at: now), let heldSince else { return false }
        return now - heldSince >= lease
    }

    /// A renewal failed (the store is unreachable, or the row is no longer ours).
    public mutating func failed(_ reason: String, startedAt start: NIODeadline? = nil) {
        lastFailure = reason
        if let start { lastFailedAttempt = max(lastFailedAttempt ?? start, start) }
    }

    /// When the latest renewal that failed started.
    public private(set) var lastFailedAttempt: NIODeadline?

    /// The partition verdict (README "What the cluster promises under faults"): the peers
    /// whose recent word proves this node the one cut off from the store. A peer counts when it
    /// renewed its lease after this node's ran out (`lapsed`) and before a renewal of this node
    /// started and failed: the database answered the peer and then refused this node. A peer
    /// that merely got through first, while this node has not tried since (a connection still
    /// being made, a renewal still on its way), proves nothing yet.
    public static func peersReachingTheStore(
        lapsed: NIODeadline, lastFailedAttempt: NIODeadline?,
        peers: [String: (renewed: NIODeadline, heard: NIODeadline)],
        now: NIODeadline, freshness: TimeAmount
    ) -> [String] {
        guard let lastFailedAttempt else { return [] }
        return peers.filter { _, word in
            word.renewed > lapsed && word.renewed < lastFailedAttempt && now - word.heard < freshness
        }.keys.sorted()
    }

    /// The row was taken over: the lease is gone at once.
    public mutating func lost(_ reason: String) {
        heldUntil = nil
        heldSince = nil
        lastFailure = reason
    }

    public func isHeld(at now: NIODeadline) -> Bool {
        heldUntil.map { now < $0 } ?? false
    }

    /// When the last successful renewal started.
    public var lastRenewal: NIODeadline? { heldUntil.map { $0 - lease } }
}

/// One node link as the operations endpoints report it.
public struct PeerLink: Sendable, Equatable, Codable {
    public enum Direction: String, Sendable, Codable { case inbound, outbound }

    public var peer: String
    public var direction: Direction
    public var address: String
    public var up: Bool
    /// Why the link is down, while it is.
    public var detail: String?

    public init(peer: String, direction: Direction, address: String, up: Bool, detail: String?) {
        (self.peer, self.direction, self.address, self.up, self.detail) = (peer, direction, address, up, detail)
    }
}

/// The cluster as `/api/v1/nodes` and `starling ctl cluster nodes` show it.
public struct ClusterSummary: Sendable, Equatable, Codable {
    /// This node's id.
    public var node: String
    public var nodes: [NodeRecord]
    public var links: [PeerLink]

    public init(node: String, nodes: [NodeRecord], links: [PeerLink]) {
        (self.node, self.nodes, self.links) = (node, nodes, links)
    }
}

/// Session ownership in a shared store: a session row names the node that holds it, and only
/// that node's writes change it.
public protocol SessionOwnershipStore: Sendable {
    /// Takes a new claim epoch and names this node the owner of `clientID`'s session row (if
    /// there is one and no later claim took it): from now on the node that held it cannot
    /// change it. Returns the epoch.
    func markOwned(_ clientID: String) async throws -> Int64
    /// `markOwned`, with the node that owned the row before (nil: none, or this one).
    func claimOwnership(_ clientID: String) async throws -> (epoch: Int64, previousOwner: String?)
    /// Whether `node` is replaying its spool, holding its lease: what it ended for a session
    /// while it spooled may not be in the store yet.
    func isReplaying(node: String) async throws -> Bool
    /// `claimOwnership` of many sessions in one statement (a reconnect storm): each gets an
    /// epoch of its own, exactly as if claimed alone. Every id of `clientIDs` is in the answer.
    func claimOwnership(of clientIDs: [String]) async throws -> [String: (epoch: Int64, previousOwner: String?)]
    /// Reads what the store holds of each session of `clientIDs` (an empty state for one it does
    /// not have; inbound QoS 2 entries of the ingest bridge too), once this node owns them: one
    /// read for all. Every id of `clientIDs` is in the answer.
    func claimSessions(_ clientIDs: [String]) async throws -> [String: StoredState]
    /// The queued and in-flight deliveries of `clientIDs`' sessions, with their payloads (a
    /// pickup: `Broker.beginPickup`).
    func deliveries(of clientIDs: [String]) async throws -> (messages: [StoredMessage], deliveries: [StoredDelivery])
    /// The stored sessions other nodes hold (or none does), with their subscriptions: the
    /// session directory this node starts from.
    func loadDirectory() async throws -> [SessionDirectoryEntry]
    /// Every retained message.
    func loadRetained() async throws -> [StoredMessage]

    // Dead-node clean-up: each step changes rows in one statement (or transaction), so when
    // several survivors run it at once, each row is handled by exactly one of them.

    /// Lets go of the sessions of nodes whose lease expired: no node holds them any more;
    /// those whose client was connected lost it when their node died, so their will is due
    /// after its delay (`willDueAt`) and their expiry runs from now. Returns them.
    func releaseDeadNodesSessions(now: Int64) async throws -> [StoredSession]
    /// Takes the wills that are due of sessions no node holds (each once in the cluster).
    func takeDueWills(now: Int64) async throws -> [(clientID: String, will: MQTTWill)]
    /// Deletes the sessions no node holds whose expiry has passed; returns their client ids.
    func deleteExpiredSessions(now: Int64) async throws -> [String]
    /// Takes the QoS 1 messages queued or in flight for shared subscriptions of `clientIDs`
    /// (sessions of a dead node this node let go), to give them to other members
    /// [MQTT-4.8.2-5]; QoS 2 ones stay with their sessions.
    func takeSharedDeliveries(of clientIDs: [String]) async throws -> [(message: StoredMessage, group: ShareGroupKey)]
    /// Takes (each once in the cluster) the connection wills of dead nodes, and this node's own
    /// from its earlier starts (tokens below `firstToken`, the first id of this start's block).
    func takeConnectionWills(firstToken: Int64) async throws -> [(clientID: String, will: MQTTWill)]
    /// Takes this node's connection wills of `tokens` that are still there (no survivor took them).
    func takeConnectionWills(tokens: [Int64]) async throws -> [(clientID: String, will: MQTTWill)]
}

extension SessionOwnershipStore {
    /// `claimSessions` of one client.
    public func claimSession(_ clientID: String) async throws -> StoredState {
        try await claimSessions([clientID])[clientID] ?? StoredState()
    }
}
