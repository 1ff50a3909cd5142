import MQTTCodec
import NIOCore
import StarlingCore

/// A partition is not a split brain (docs/architecture.md, "Cluster"). Every second each node
/// tells its peers, over its links, how long ago its last lease renewal started. A node whose
/// lease has run out hears whether a peer renewed *after* that and before this node's own
/// latest renewal, which failed, started: then the database is there for the peer and not for
/// this node — it is the one cut off (`LeaseKeeper.peersReachingTheStore`). The survivors will let its sessions
/// go and take its clients, so it lets them go first (DISCONNECT 0x89 Server busy to 5.0
/// clients, no write, wills left to the survivors' sweep) and takes nothing over (claims need
/// the database) until it holds its lease again. When no peer renewed since, the database is
/// out for everyone (nobody can renew after an outage began): no node takes anything over, so
/// each keeps its clients.
extension ClusterRouter {
    /// How recent a peer's word must be to count.
    static let leaseWordFreshness = TimeAmount.seconds(3)

    /// Each second: tells the peers, and lets the clients go if this node is the one cut off.
    public func leaseChecked(_ lease: LeaseView) {
        loop.execute { [self] in
            let now = NIODeadline.now()
            var payload = ByteBuffer()
            payload.writeInteger(lease.lastRenewal.map { (now - $0).nanoseconds / 1_000_000 } ?? -1)
            let word = MQTTPublish(topic: PeerMessages.lease, payload: payload, qos: .atMostOnce)
            for link in outbound.values { link.send(.publish(word), evenIfSlow: true) }
            if lease.held {
                if cutOff || outageLogged { logger.notice("cluster lease held again: serving clients") }
                let tokens = broker?.reachesTheStoreAgain() ?? []
                if cutOff { publishCutOffWills(tokens) }
                cutOff = false
                outageLogged = false
                return
            }
            guard let lapsed = lease.until else { return }  // never held: not serving yet
            let reaching = LeaseKeeper.peersReachingTheStore(
                lapsed: lapsed, lastFailedAttempt: lease.lastFailedAttempt, peers: peerRenewals,
                now: now, freshness: Self.leaseWordFreshness)
            if !reaching.isEmpty {
                guard !cutOff else { return }
                cutOff = true
                logger.critical(
                    "this node cannot reach PostgreSQL while \(reaching.joined(separator: ", ")) can: it is the one cut off, and lets its clients go to nodes that can serve them"
                )
                broker?.cutOffFromTheStore()
            } else if !outageLogged && now - lapsed > Self.leaseWordFreshness {
                // Peers renew every second: none did for this long since this lease ran out.
                outageLogged = true
                logger.error(
                    "no peer has renewed its lease since this node's ran out: a database outage, not a partition; clients stay here")
            }
        }
    }

    /// The wills of the connections let go while cut off that no survivor took: now, once.
    private func publishCutOffWills(_ tokens: [Int64]) {
        guard let broker, let ownership, !tokens.isEmpty else { return }
        let done = NIOLoopBound(broker.publishWillsTaken, eventLoop: loop)
        let (loop, logger) = (loop, logger)
        Task {
            do {
                let taken = try await ownership.takeConnectionWills(tokens: tokens)
                loop.execute { done.value(taken) }
            } catch {
                logger.error("cannot read the wills of the clients let go while cut off: \(error)")
            }
        }
    }
}
