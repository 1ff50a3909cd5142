import MQTTCodec
import NIOCore
import StarlingCore

/// The partition verdict's effects (`PartitionVerdict` decides): the word to the peers each
/// second, and the clients let go when this node is the one cut off. The survivors will let its
/// sessions go and take its clients, so it lets them go first (DISCONNECT 0x89 Server busy to
/// 5.0 clients, no write, wills left to the survivors' sweep) and takes nothing over (claims
/// need the database) until it holds its lease again.
extension ClusterRouter {
    /// Each second: tells the peers, and lets the clients go if this node is the one cut off.
    public func leaseChecked(_ lease: LeaseView) {
        loop.execute { [self] in
            let now = NIODeadline.now()
            var payload = ByteBuffer()
            payload.writeInteger(lease.lastRenewal.map { (now - $0).nanoseconds / 1_000_000 } ?? -1)
            let word = MQTTPublish(topic: PeerMessages.lease, payload: payload, qos: .atMostOnce)
            for link in outbound.values { link.send(.publish(word), evenIfSlow: true) }
            switch partition.check(lease, now: now) {
            case .held(let wasCutOff, let wasOut):
                if wasOut { logger.notice("cluster lease held again: serving clients") }
                let tokens = broker?.reachesTheStoreAgain() ?? []
                if wasCutOff { publishCutOffWills(tokens) }
            case .cutOff(let reaching):
                logger.critical(
                    "this node cannot reach PostgreSQL while \(reaching.joined(separator: ", ")) can: it is the one cut off, and lets its clients go to nodes that can serve them"
                )
                broker?.cutOffFromTheStore()
            case .outage:
                logger.error(
                    "no peer has renewed its lease since this node's ran out: a database outage, not a partition; clients stay here")
            case .unchanged:
                break
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
