import MQTTCodec
import NIOCore

extension Broker {
    /// Runs what is due: connect timeouts, keep alive [MQTT-3.1.2-22], delayed wills, session
    /// expiry, `$SYS` updates. The transport calls it about once a second; tests call it with a
    /// manual clock.
    public func tick() {
        let now = clock.now()
        takeover.pruneEndedOfLetGo(now: now)
        peers.pruneReadFromStore(now: now)
        for connection in connections {
            switch connection.state {
            case .awaitingConnect, .authenticating:
                if now - connection.openedAt >= .nanoseconds(Int64(configuration.connectTimeout * 1e9)) {
                    logger.info(
                        "no CONNECT within \(configuration.connectTimeout)s", metadata: ["remote": "\(connection.transport.remoteAddress)"])
                    connection.state = .closed
                    close(connection)
                }
            case .connected:
                // One and a half times the keep alive without a packet [MQTT-3.1.2-22].
                if connection.keepAlive > 0 && now - connection.lastReceived >= .milliseconds(Int64(connection.keepAlive) * 1500) {
                    fail(
                        connection, .keepAliveTimeout, "no packet within 1.5 × keep alive (\(connection.keepAlive)s)", spec: "MQTT-3.1.2-22"
                    )
                }
            case .connecting, .closed:
                break
            }
        }
        for session in Array(sessions.values) where session.connection == nil {
            if let due = session.willDueAt, due <= now, let will = session.will {
                session.will = nil
                session.willDueAt = nil
                lifecycle.publishWill(will, of: session.clientID, now: now)
                if sessions[session.clientID] === session { writes.append(contentsOf: sessionRowOperations(session)) }
            }
            if let expiresAt = session.expiresAt, expiresAt <= now {
                logger.debug("session expired", metadata: ["mqtt.client_id": "\(session.clientID)"])
                lifecycle.endSession(session, now: now)
            }
        }
        if configuration.sysInterval > 0 && now - lastSysPublish >= .nanoseconds(Int64(configuration.sysInterval * 1e9)) {
            lastSysPublish = now
            publishSys(now: now)
        }
        commitCollected()
        flush()
    }

    /// The `$SYS/broker/...` topics, retained, as Mosquitto names them.
    func publishSys(now: NIODeadline) {
        let uptime = (now - startedAt).nanoseconds / 1_000_000_000
        var values: [(String, String)] = [
            ("version", version),
            ("uptime", "\(uptime) seconds"),
            ("clients/connected", "\(connectedClientCount)"),
            ("clients/total", "\(sessions.count)"),
            ("messages/received", "\(stats.publishReceived)"),
            ("messages/sent", "\(stats.publishSent)"),
            ("messages/dropped", "\(stats.messagesDropped)"),
            ("load/bytes/received", "\(stats.bytesReceived)"),
            ("load/bytes/sent", "\(stats.bytesSent)"),
            ("subscriptions/count", "\(index.count)"),
            ("retained messages/count", "\(retained.count)")
        ]
        if let persistence {
            // Starling's own: the group commit's work (operations / commits = mean batch size).
            values += [
                ("store/commits", "\(persistence.commits)"),
                ("store/operations", "\(persistence.committedOperations)"),
                ("store/failures", "\(persistence.failures)"),
                ("store/backlogs", "\(stats.storeBacklogs)"),
                ("store/fenced", "\(stats.fencedCommits)")
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
        if let cluster {
            let figures = cluster.statistics
            values += [
                ("cluster/nodes", "\(figures.nodes)"),
                ("cluster/links", "\(figures.linksUp)"),
                ("cluster/messages/forwarded", "\(figures.forwarded)"),
                ("cluster/messages/received", "\(stats.forwardedIn)"),
                ("cluster/messages/dropped", "\(figures.forwardDrops)")
            ]
        }
        for (name, value) in values {
            let message = Message(
                topic: "$SYS/broker/\(name)", payload: ByteBuffer(string: value), qos: .atMostOnce,
                retain: true, publisher: "$SYS")
            retained.set(message)
            publishing.route(message, now: now)
        }
    }
}
