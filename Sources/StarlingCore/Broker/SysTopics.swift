import MQTTCodec
import NIOCore

/// The `$SYS/broker/...` topics, retained, as Mosquitto names them, and Starling's own (the
/// store, the spool, the cluster). One of the broker's parts (`Broker.sys`), confined to its
/// event loop like the broker.
final class SysTopics {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    /// The `$SYS/broker/...` topics, retained, as Mosquitto names them.
    func publishSys(now: NIODeadline) {
        let uptime = (now - broker.startedAt).nanoseconds / 1_000_000_000
        var values: [(String, String)] = [
            ("version", broker.version),
            ("uptime", "\(uptime) seconds"),
            ("clients/connected", "\(broker.connectedClientCount)"),
            ("clients/total", "\(broker.sessions.count)"),
            ("messages/received", "\(broker.stats.publishReceived)"),
            ("messages/sent", "\(broker.stats.publishSent)"),
            ("messages/dropped", "\(broker.stats.messagesDropped)"),
            ("load/bytes/received", "\(broker.stats.bytesReceived)"),
            ("load/bytes/sent", "\(broker.stats.bytesSent)"),
            ("subscriptions/count", "\(broker.index.count)"),
            ("retained messages/count", "\(broker.retained.count)")
        ]
        if let persistence = broker.persistence {
            // Starling's own: the group commit's work (operations / commits = mean batch size).
            values += [
                ("store/commits", "\(persistence.commits)"),
                ("store/operations", "\(persistence.committedOperations)"),
                ("store/failures", "\(persistence.failures)"),
                ("store/backlogs", "\(broker.stats.storeBacklogs)"),
                ("store/fenced", "\(broker.stats.fencedCommits)")
            ]
            if let fallback = persistence.store as? FallbackStore {
                // The SQLite fallback (README): where commits go, what waits for the replay.
                let spool = fallback.status
                values += [
                    ("store/state", spool.mode == .direct ? "postgres" : spool.mode.rawValue),
                    ("store/spool/batches", "\(spool.spooledBatches)"),
                    ("store/spool/bytes", "\(spool.spooledBytes)"),
                    ("store/spool/operations", "\(spool.spooledOperations)"),
                    ("store/spool/replayed", "\(spool.replayedOperations)"),
                    ("store/outage/seconds", "\(Int(spool.outageSecondsTotal))")
                ]
            }
        }
        if let cluster = broker.cluster {
            let figures = cluster.statistics
            values += [
                ("cluster/nodes", "\(figures.nodes)"),
                ("cluster/links", "\(figures.linksUp)"),
                ("cluster/messages/forwarded", "\(figures.forwarded)"),
                ("cluster/messages/received", "\(broker.stats.forwardedIn)"),
                ("cluster/messages/dropped", "\(figures.forwardDrops)")
            ]
        }
        for (name, value) in values {
            let message = Message(
                topic: "$SYS/broker/\(name)", payload: ByteBuffer(string: value), qos: .atMostOnce,
                retain: true, publisher: "$SYS")
            broker.retained.set(message)
            broker.publishing.route(message, now: now)
        }
    }
}
