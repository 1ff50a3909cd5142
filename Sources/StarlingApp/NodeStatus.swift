import NIOCore
import StarlingCluster
public import StarlingCore
import StarlingTransport
public import StarlingOps
import Synchronization

/// The node's state as the operations endpoints see it. `StarlingNode` moves it through its
/// phases; every answer reads the live broker on its event loop (docs/architecture.md, G5: readiness fails
/// while restoring, when a listener does not accept, when the store cannot be written, and
/// while draining).
public final class NodeStatus: OpsSource {
    public enum Phase: Int, Sendable, Comparable {
        case starting, restoring, serving, draining, stopped
        public static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    /// How long a check waits for the broker's event loop or the store before it fails.
    static let answerTimeout = Duration.seconds(2)

    private struct State {
        var phase = Phase.starting
        var listeners: [any Channel] = []
        var broker: Broker?
        var loop: (any EventLoop)?
        /// Where state is kept ("SQLite ./data/starling.db"), or nil with no store.
        var store: String?
        /// The last store ping: nil until one has run.
        var ping: (passing: Bool, detail: String)?
        var membership: ClusterMembership?
        var links: PeerLinks?
        /// With PostgreSQL: the store in front of it, which spools while it is away.
        var fallback: FallbackStore?
        /// Since when this node has held its lease while refusing claims (`claimRefusalGrace`).
        var refusingClaimsSince: ContinuousClock.Instant?
    }

    /// How long a node may hold its lease while still refusing claims (its spool not yet
    /// replayed, its state not yet loaded) before it says it is not ready: the replay starts
    /// within a probe of the database answering, so only a node stuck on its spool gets there.
    static let claimRefusalGrace = Duration.seconds(3)

    private let state = Mutex(State())
    private let startedAt = ContinuousClock.now

    public init() {}

    public var phase: Phase { state.withLock { $0.phase } }

    func enter(_ phase: Phase) {
        state.withLock { $0.phase = max($0.phase, phase) }
    }

    func attach(broker: Broker, loop: any EventLoop, store: String?, fallback: FallbackStore? = nil) {
        state.withLock {
            $0.broker = broker
            $0.loop = loop
            $0.store = store
            $0.fallback = fallback
        }
    }

    /// The broker's loop is about to stop: requests from now on no longer ask it (they would
    /// schedule work on a loop that has shut down).
    func detachBroker() {
        state.withLock {
            $0.broker = nil
            $0.loop = nil
        }
    }

    func attach(cluster membership: ClusterMembership, links: PeerLinks) {
        state.withLock {
            $0.membership = membership
            $0.links = links
        }
    }

    func listening(on channels: [any Channel]) {
        state.withLock { $0.listeners = channels }
    }

    func recordPing(passing: Bool, detail: String) {
        state.withLock { $0.ping = (passing, detail) }
    }

    // MARK: OpsSource

    public func liveness() async -> String? {
        guard state.withLock({ $0.broker != nil }) else { return nil }  // still starting: alive
        return await snapshot() == nil ? "the broker's event loop has not answered for \(Self.answerTimeout)" : nil
    }

    public func readiness() async -> [HealthCheck] {
        let (phase, listeners, store, ping, membership, links, fallback) = state.withLock {
            ($0.phase, $0.listeners, $0.store, $0.ping, $0.membership, $0.links, $0.fallback)
        }
        let spool = fallback?.status
        let snapshot = await snapshot()
        var checks: [HealthCheck] = []

        checks.append(
            phase >= .serving
                ? HealthCheck(name: "restored", passing: true, detail: "sessions and retained messages restored")
                : HealthCheck(name: "restored", passing: false, detail: phase == .starting ? "starting" : "restoring state from the store"))

        let addresses = listeners.compactMap { ListenAddress(bound: $0.localAddress)?.description }
        let accepting = phase >= .serving && !listeners.isEmpty && listeners.allSatisfy(\.isActive)
        checks.append(
            HealthCheck(
                name: "listeners", passing: accepting && phase == .serving,
                detail: accepting ? "accepting MQTT on \(addresses.joined(separator: ", "))" : "not accepting MQTT connections"))

        checks.append(
            HealthCheck(
                name: "event_loop", passing: snapshot != nil,
                detail: snapshot != nil ? "answers" : "the broker's event loop did not answer within \(Self.answerTimeout)"))
        checks.append(Self.storeCheck(store: store, spool: spool, ping: ping, failure: snapshot?.storeFailure))
        if let membership {
            checks.append(clusterCheck(membership: membership, links: links, spool: spool, cutOff: snapshot.map(\.cutOff)))
        }
        checks.append(
            phase < .draining
                ? HealthCheck(name: "draining", passing: true, detail: "not draining")
                : HealthCheck(name: "draining", passing: false, detail: "shutting down: clients are being disconnected"))
        return checks
    }

    /// The store: failing commits fail it; a database outage does not (the node serves on its
    /// spool, README "SQLite fallback"); a failed ping of an idle store does.
    private static func storeCheck(store: String?, spool: FallbackStatus?, ping: (passing: Bool, detail: String)?, failure: String?)
        -> HealthCheck
    {
        guard let store else { return HealthCheck(name: "store", passing: true, detail: "none (storage.in_memory = true)") }
        let word = spool.map { $0.mode == .direct ? "postgres" : $0.mode.rawValue } ?? "sqlite"
        if let failure {
            return HealthCheck(
                name: "store", passing: false, detail: "\(store): commits are failing (\(failure)); acknowledgements wait", state: word)
        }
        if let spool, spool.mode != .direct {
            return HealthCheck(name: "store", passing: true, detail: "\(store): \(Self.describe(spool))", state: word)
        }
        if let ping, !ping.passing {
            return HealthCheck(name: "store", passing: false, detail: "\(store): \(ping.detail)", state: word)
        }
        return HealthCheck(name: "store", passing: true, detail: store, state: word)
    }

    /// The cluster: this node's own lease decides; a lost peer never makes a survivor unready
    /// (its clients must be served here). The links are reported for the operator.
    private func clusterCheck(membership: ClusterMembership, links: PeerLinks?, spool: FallbackStatus?, cutOff: Bool?) -> HealthCheck {
        let (held, detail) = membership.leaseStatus()
        let linkText = (links?.all ?? []).map { "\($0.direction.rawValue) \($0.peer) \($0.up ? "up" : "down")" }
        // Without its lease, a node that spools and that no peer outlived is in a database
        // outage with the others: it serves. The one cut off (a peer still renews) is not ready.
        let outage = !held && spool.map { $0.mode != .direct } == true && cutOff == false
        // G5, G7: a node whose lease was renewed since it went to its spool reaches the
        // database and must serve claims; one that would still refuse them (its spool not yet
        // replayed) is not ready. The lease held by the node's own clock proves nothing here:
        // it outlives the first seconds of an outage.
        let now = ContinuousClock.now
        let renewedAgo = membership.lease.lastRenewal.map { NIODeadline.now() - $0 }
        let spoolingFor = spool?.outageStarted.map { now - $0 }
        let renewedWhileSpooling =
            spool?.mode == .spooling
            && renewedAgo.map { renewed in
                spoolingFor.map { Duration.nanoseconds(renewed.nanoseconds) < $0 } ?? false
            } ?? false
        let refusing = held && (renewedWhileSpooling || spool?.stateDeferred == true)
        let since = state.withLock { s -> ContinuousClock.Instant? in
            s.refusingClaimsSince = refusing ? s.refusingClaimsSince ?? now : nil
            return s.refusingClaimsSince
        }
        let stuck = since.map { now - $0 > Self.claimRefusalGrace } ?? false
        let prefix =
            outage
            ? "database outage, serving on the spool: "
            : cutOff == true
                ? "cut off from the store while peers reach it: "
                : stuck ? "the lease is held but stored sessions are refused (the spool is not replayed yet): " : ""
        return HealthCheck(
            name: "cluster", passing: (held && !stuck) || outage,
            detail: prefix + detail + (linkText.isEmpty ? "" : "; links: " + linkText.joined(separator: ", ")))
    }

    public func metrics() async -> [MetricValue] {
        let ready = await readiness().allSatisfy(\.passing)
        var values = [MetricValue("starling_ready", .gauge, ready ? 1 : 0, help: "1 when /readyz answers 200, else 0.")]
        let (membership, links, fallback) = state.withLock { ($0.membership, $0.links, $0.fallback) }
        if let membership { values += Self.clusterMetrics(membership, links: links) }
        guard let s = await snapshot() else { return values }
        values += Self.brokerMetrics(s)
        if let cluster = s.cluster { values += Self.forwardingMetrics(cluster, received: s.stats.forwardedIn) }
        if let spool = fallback?.status { values += Self.spoolMetrics(spool) }
        if let store = s.store { values += Self.storeMetrics(store, s) }
        return values
    }

    private static func clusterMetrics(_ membership: ClusterMembership, links: PeerLinks?) -> [MetricValue] {
        let nodes = membership.nodes
        return [
            MetricValue(
                "starling_cluster_nodes", .gauge, Double(nodes.count { $0.isLive }),
                help: "Live nodes of the cluster (unexpired leases), this one included."),
            MetricValue(
                "starling_cluster_nodes_dead", .gauge, Double(nodes.count { $0.status == "dead" }), help: "Nodes whose lease expired."),
            MetricValue(
                "starling_cluster_lease_held", .gauge, membership.leaseStatus().held ? 1 : 0,
                help: "1 while this node's membership lease is renewed."),
            MetricValue(
                "starling_cluster_lease_renewals_total", .counter, Double(membership.renewals), help: "Lease renewals that succeeded."),
            MetricValue(
                "starling_cluster_lease_failures_total", .counter, Double(membership.renewalFailures),
                help: "Lease renewals that failed."),
            MetricValue(
                "starling_cluster_links_up", .gauge, Double((links?.all ?? []).count { $0.up }),
                help: "Node links that are up (both directions)."),
            MetricValue(
                "starling_cluster_links_refused_total", .counter, Double(links?.refusals ?? 0),
                help: "Connections to the cluster listener refused for not proving the cluster secret.")
        ]
    }

    private static func brokerMetrics(_ s: Snapshot) -> [MetricValue] {
        [
            MetricValue("starling_uptime_seconds", .gauge, s.uptimeSeconds, help: "Seconds since the broker started."),
            MetricValue("starling_connections", .gauge, Double(s.connections), help: "Open network connections."),
            MetricValue("starling_clients_connected", .gauge, Double(s.connected), help: "Connections with an accepted CONNECT."),
            MetricValue("starling_sessions", .gauge, Double(s.sessions), help: "Sessions, connected or not."),
            MetricValue("starling_subscriptions", .gauge, Double(s.subscriptions), help: "Subscriptions of all sessions."),
            MetricValue("starling_retained_messages", .gauge, Double(s.retained), help: "Retained messages."),
            MetricValue(
                "starling_connections_accepted_total", .counter, Double(s.stats.connectionsAccepted), help: "Network connections accepted."),
            MetricValue("starling_connections_refused_total", .counter, Double(s.stats.connectionsRefused), help: "CONNECTs refused."),
            MetricValue(
                "starling_protocol_errors_total", .counter, Double(s.stats.protocolErrors),
                help: "Connections closed for a malformed packet or a protocol error."),
            MetricValue("starling_packets_received_total", .counter, Double(s.stats.messagesReceived), help: "MQTT packets received."),
            MetricValue("starling_packets_sent_total", .counter, Double(s.stats.messagesSent), help: "MQTT packets sent."),
            MetricValue("starling_messages_received_total", .counter, Double(s.stats.publishReceived), help: "PUBLISH packets received."),
            MetricValue("starling_messages_sent_total", .counter, Double(s.stats.publishSent), help: "PUBLISH packets sent."),
            MetricValue(
                "starling_messages_dropped_total", .counter, Double(s.stats.messagesDropped),
                help: "Messages a session could not take (queue full, too large, expired)."),
            MetricValue("starling_bytes_received_total", .counter, Double(s.stats.bytesReceived), help: "Bytes received from clients."),
            MetricValue("starling_bytes_sent_total", .counter, Double(s.stats.bytesSent), help: "Bytes sent to clients.")
        ]
    }

    private static func forwardingMetrics(_ cluster: ClusterStatistics, received: UInt64) -> [MetricValue] {
        [
            MetricValue(
                "starling_cluster_forwarded_total", .counter, Double(cluster.forwarded),
                help: "Messages sent to peers for their subscribers."),
            MetricValue(
                "starling_cluster_received_total", .counter, Double(received),
                help: "Messages peers sent to this node's subscribers."),
            MetricValue(
                "starling_cluster_forward_drops_total", .counter, Double(cluster.forwardDrops),
                help:
                    "Messages for a peer's subscribers that could not be sent (no link, or a slow one): QoS 0 and clean sessions' copies; stored sessions' copies are in the store."
            )
        ]
    }

    private static func spoolMetrics(_ spool: FallbackStatus) -> [MetricValue] {
        [
            MetricValue(
                "starling_store_spooling", .gauge, spool.mode == .direct ? 0 : 1,
                help: "1 while PostgreSQL cannot be reached or the spool is being replayed into it (commits go to the local spool)."),
            MetricValue(
                "starling_spool_batches", .gauge, Double(spool.spooledBatches),
                help: "Batches in the local spool, waiting for the replay."),
            MetricValue(
                "starling_spool_bytes", .gauge, Double(spool.spooledBytes),
                help: "Bytes in the local spool (limit: storage.spool_max_bytes)."),
            MetricValue(
                "starling_spool_operations_total", .counter, Double(spool.spooledOperations),
                help: "Store operations committed to the spool."),
            MetricValue(
                "starling_spool_replayed_operations_total", .counter, Double(spool.replayedOperations),
                help: "Spooled operations replayed into PostgreSQL (spooled minus replayed: the replay's backlog)."),
            MetricValue(
                "starling_store_outages_total", .counter, Double(spool.outages),
                help: "Times PostgreSQL could not be reached and the node switched to its spool."),
            MetricValue(
                "starling_store_outage_seconds_total", .counter, spool.outageSecondsTotal,
                help: "Seconds spent spooling, the current outage included.")
        ]
    }

    private static func storeMetrics(_ store: Snapshot.Store, _ s: Snapshot) -> [MetricValue] {
        [
            MetricValue(
                "starling_store_commits_total", .counter, Double(store.commits), help: "Transactions committed by the group commit."),
            MetricValue(
                "starling_store_operations_total", .counter, Double(store.operations),
                help: "Store operations committed (operations / commits = mean batch)."),
            MetricValue(
                "starling_store_failures_total", .counter, Double(store.failures),
                help: "Commits that failed or stalled (each retried)."),
            MetricValue(
                "starling_store_backlogs_total", .counter, Double(s.stats.storeBacklogs),
                help: "Times publishers were paused because the store fell behind."),
            MetricValue(
                "starling_fenced_commits_total", .counter, Double(s.stats.fencedCommits),
                help:
                    "Commits left out because a later claim held the sending connection's session (a frozen or cut-off node's stale packets)."
            ),
            MetricValue(
                "starling_store_pending_writes", .gauge, Double(store.outstanding), help: "Writes submitted and not yet committed."),
            MetricValue(
                "starling_store_failing", .gauge, s.storeFailure == nil ? 0 : 1, help: "1 while commits fail (acknowledgements wait).")
        ]
    }

    static func describe(_ spool: FallbackStatus) -> String {
        let held = "\(spool.spooledBatches) batches, \(spool.spooledBytes) bytes in the spool"
        switch spool.mode {
        case .direct:
            return held
        case .spooling:
            let why = spool.lastError.map { " (\($0))" } ?? ""
            return "spooling: PostgreSQL cannot be reached\(why); \(held)\(spool.full ? ", full" : ""); replayed when it is back"
        case .replaying:
            return "replaying the spool into PostgreSQL: \(held) left, \(spool.replayedOperations) operations replayed"
        }
    }

    // MARK: The broker's state, read on its loop

    private struct Snapshot: Sendable {
        struct Store: Sendable {
            var commits: UInt64
            var operations: UInt64
            var failures: UInt64
            var outstanding: Int
        }
        var uptimeSeconds: Double
        var connections: Int
        var connected: Int
        var sessions: Int
        var subscriptions: Int
        var retained: Int
        var stats: BrokerStats
        var store: Store?
        var storeFailure: String?
        var cluster: ClusterStatistics?
        var cutOff: Bool
    }

    func brokerAndLoop() -> (Broker, any EventLoop)? {
        state.withLock { s in s.broker.flatMap { b in s.loop.map { (b, $0) } } }
    }

    /// The broker's counters, read on its event loop; nil if the loop does not answer in time.
    private func snapshot() async -> Snapshot? {
        guard let (broker, loop) = brokerAndLoop() else { return nil }
        let uptime = Double((ContinuousClock.now - startedAt).components.seconds)
        return await withTimeout(Self.answerTimeout) {
            try await loop.submit {
                let writer = broker.persistence
                return Snapshot(
                    uptimeSeconds: uptime,
                    connections: broker.connectionCount, connected: broker.connectedClientCount,
                    sessions: broker.sessionCount, subscriptions: broker.subscriptionCount, retained: broker.retainedCount,
                    stats: broker.stats,
                    store: writer.map {
                        Snapshot.Store(
                            commits: $0.commits, operations: $0.committedOperations, failures: $0.failures,
                            outstanding: $0.outstandingWrites)
                    },
                    storeFailure: writer.flatMap { $0.isFailing ? ($0.lastFailure ?? "failing") : nil },
                    cluster: broker.cluster?.statistics, cutOff: broker.clusterCutOff)
            }.get()
        }
    }
}

extension NodeStatus: AdminSource {
    /// Runs `body` with the broker on its event loop; nil before the broker exists or when the
    /// loop does not answer in time.
    private func onBroker<T: Sendable>(_ body: @escaping @Sendable (Broker) -> T) async -> T? {
        guard let (broker, loop) = brokerAndLoop() else { return nil }
        return await withTimeout(Self.answerTimeout) { try await loop.submit { body(broker) }.get() }
    }

    public func cluster() async -> ClusterSummary? {
        let (membership, links) = state.withLock { ($0.membership, $0.links) }
        guard let membership else { return nil }
        return ClusterSummary(node: membership.registration.nodeID, nodes: membership.nodes, links: links?.all ?? [])
    }

    public func clients() async -> [ClientSummary]? {
        await onBroker { $0.admin.clientSummaries() }
    }

    public func client(_ clientID: String) async -> ClientSummary? {
        await onBroker { $0.admin.clientSummary(clientID) } ?? nil
    }

    public func disconnect(_ clientID: String, endSession: Bool) async -> Bool {
        await onBroker { $0.admin.disconnectClient(clientID, endSession: endSession) } ?? false
    }
}

/// Runs `operation`; nil when it throws or takes longer than `limit`. Unstructured on purpose:
/// an event loop that is stuck never completes its future, and a task group would wait for it.
func withTimeout<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async -> T? {
    let once = Mutex(false)
    return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        let finish: @Sendable (T?) -> Void = { value in
            if once.withLock({ done in
                defer { done = true }; return !done
            }) {
                continuation.resume(returning: value)
            }
        }
        let timer = Task {
            do { try await Task.sleep(for: limit) } catch { return }
            finish(nil)
        }
        Task {
            let value = try? await operation()
            timer.cancel()
            finish(value)
        }
    }
}
