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
                if sessions[session.clientID] === session { writes.append(contentsOf: rows.sessionRowOperations(session)) }
            }
            if let expiresAt = session.expiresAt, expiresAt <= now {
                logger.debug("session expired", metadata: ["mqtt.client_id": "\(session.clientID)"])
                lifecycle.endSession(session, now: now)
            }
        }
        if configuration.sysInterval > 0 && now - lastSysPublish >= .nanoseconds(Int64(configuration.sysInterval * 1e9)) {
            lastSysPublish = now
            sys.publishSys(now: now)
        }
        commitCollected()
        flush()
    }
}
