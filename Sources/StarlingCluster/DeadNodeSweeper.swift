public import Logging
public import NIOCore
public import StarlingCore

/// Dead-node clean-up (docs/architecture.md, "Drain and dead nodes"; the lesson of EMQX #1667: work only the dead node
/// could do must be done by a survivor, from the rows). Every node runs it every second; each
/// step changes the rows it handles in one statement, so with several survivors each session is
/// handled once:
/// - the sessions of nodes whose lease expired are let go (no node holds them): a session whose
///   client was connected lost it with its node, so its will is due after its delay and its
///   expiry runs from now;
/// - the wills that are due of sessions no node holds are published, once in the cluster (a
///   client that reconnects first takes its session back, and with it the will);
/// - the QoS 1 messages of shared subscriptions queued or in flight for those sessions go to
///   other members of their groups [MQTT-4.8.2-5] (QoS 2 ones wait for their sessions);
/// - sessions no node holds whose expiry passed end, everywhere;
/// - the wills of dead nodes' connections whose sessions were not stored (Session Expiry 0:
///   their sessions ended with the connection, so the will is due at once) are published, once
///   in the cluster, and those a crashed earlier start of this node left.
public final class DeadNodeSweeper: @unchecked Sendable {
    let store: any SessionOwnershipStore
    weak var broker: (any ClusterInbound)?
    let loop: any EventLoop
    let logger: Logger
    /// The first id of this node start's block: connection wills of this node below it are
    /// from an earlier start (that died).
    let firstToken: Int64
    public var interval = TimeAmount.seconds(1)
    /// False while this node may not judge others dead yet (`ClusterMembership.heldThroughALease`:
    /// just started, or just back from a database outage in which every lease lapsed).
    let mayJudge: @Sendable () -> Bool
    /// Whose wall-clock time judges leases, wills and expiry (a manual clock in tests).
    let clock: any BrokerClock

    public init(
        store: any SessionOwnershipStore, broker: any ClusterInbound, loop: any EventLoop, firstToken: Int64, logger: Logger,
        clock: any BrokerClock = SystemBrokerClock(), mayJudge: @escaping @Sendable () -> Bool = { true }
    ) {
        (self.mayJudge, self.clock, self.store, self.broker, self.loop) = (mayJudge, clock, store, broker, loop)
        (self.firstToken, self.logger) = (firstToken, logger)
    }

    public func run() async {
        while !Task.isCancelled {
            try? await clock.sleep(for: interval)
            if Task.isCancelled { return }
            if mayJudge() { await sweep() }
        }
    }

    func sweep() async {
        let now = clock.wallClockMilliseconds()
        guard let broker else { return }
        do {
            let released = try await store.releaseDeadNodesSessions(now: now)
            if !released.isEmpty {
                logger.notice(
                    "released \(released.count) sessions of dead nodes; \(released.count { $0.connected && $0.will != nil }) wills due")
                let shared = try await store.takeSharedDeliveries(of: released.map(\.clientID))
                if !shared.isEmpty {
                    logger.notice("giving \(shared.count) QoS 1 messages of shared subscriptions of dead nodes' sessions to other members")
                    loop.execute { broker.redispatchShared(shared) }
                }
            }
            let wills = try await store.takeDueWills(now: now) + store.takeConnectionWills(firstToken: firstToken)
            let expired = try await store.deleteExpiredSessions(now: now)
            guard !wills.isEmpty || !expired.isEmpty else { return }
            for (clientID, _) in wills {
                logger.info("publishing the will of \(clientID), whose node died", metadata: ["mqtt.client_id": "\(clientID)"])
            }
            loop.execute {
                broker.publishWillsTaken(wills)
                broker.releasedSessionsExpired(expired)
            }
        } catch {
            logger.warning("dead-node clean-up failed; will retry: \(error)")
        }
    }
}
