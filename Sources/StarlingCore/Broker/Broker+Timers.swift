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
        lifecycle.checkTimeouts(now: now)
        lifecycle.runSessionTimers(now: now)
        if configuration.sysInterval > 0 && now - lastSysPublish >= .nanoseconds(Int64(configuration.sysInterval * 1e9)) {
            lastSysPublish = now
            sys.publishSys(now: now)
        }
        commitCollected()
        flush()
    }
}
