import Logging
import NIOPosix
import ServiceLifecycle
import StarlingCore
import StarlingPostgres

// The services around the broker (`StarlingNode` orders them). Each runs until its graceful
// shutdown, which the group sends in the reverse order of the list: a service stops only once
// every service that depends on it has stopped.

/// postgres-nio's pool (renewed after an outage: `PostgresPool`), and then the connections
/// outside it (the lease's, the replay's). It stops after everything that commits: the drain's
/// last commits still reach PostgreSQL.
struct PostgresClientService: Service {
    let pool: PostgresPool
    let setup: StoreSetup

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await setup.closeLines()
    }
}

/// The broker's event loop (its connections, the node links and the group commit all run on it)
/// and the password-hashing thread: they stop after every service that schedules work on them.
struct EventLoopService: Service {
    let group: MultiThreadedEventLoopGroup
    let hashing: NIOThreadPool
    let status: NodeStatus
    let logger: Logger

    func run() async {
        try? await gracefulShutdown()
        status.detachBroker()
        try? await group.shutdownGracefully()
        try? await hashing.shutdownGracefully()
        status.enter(.stopped)
        logger.notice("stopped")
    }
}

/// The spool's replay (`FallbackStore`), which starts by itself while the store spools: at the
/// node's stop it is ended once the broker has drained (what is left stays for the next start).
struct SpoolReplayService: Service {
    let fallback: FallbackStore

    func run() async {
        try? await gracefulShutdown()
        await fallback.stopReplaying()
    }
}

/// The store's periodic work once the node serves: garbage collection, ingest retention, the
/// users (`starling ctl users` takes effect within seconds) and the readiness ping. It stops
/// first: none of it matters to a node that drains.
struct StoreMaintenanceService: Service {
    let store: any PersistentStore
    let configuration: StarlingConfiguration
    let authenticator: PasswordAuthenticator
    let status: NodeStatus
    let serving: Handoff<Void>
    let logger: Logger

    /// How often the users are read again from the store.
    static let userRefreshInterval = Duration.seconds(2)
    /// How often readiness pings the store (a ping may take 3 s): with PostgreSQL, an idle node
    /// also learns here that it must spool (`FallbackStore.ping`).
    static let storePingInterval = Duration.seconds(1)

    func run() async {
        let store = self.store
        let configuration = self.configuration
        let authenticator = self.authenticator
        let status = self.status
        let logger = self.logger
        let serving = self.serving
        await cancelWhenGracefulShutdown {
            guard await serving.value() != nil else { return }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await Self.pingEvery(Self.storePingInterval, store: store, status: status) }
                group.addTask {
                    await Self.every(.seconds(30)) { _ = try? await store.collectGarbage() }
                }
                group.addTask {
                    await Self.every(.seconds(600)) {
                        do {
                            _ = try await store.enforceRetention(
                                before: configuration.retentionCutoff(), now: SystemBrokerClock().wallClockMilliseconds())
                        } catch {
                            logger.warning("ingest retention failed; will retry: \(error)")
                        }
                    }
                }
                group.addTask {
                    await Self.every(Self.userRefreshInterval) {
                        if let users = try? await store.loadUsers() { authenticator.replaceUsers(users) }
                    }
                }
            }
        }
    }

    /// Runs `body` every `interval`, one run at a time, until cancelled.
    static func every(_ interval: Duration, _ body: @Sendable () async -> Void) async {
        while (try? await Task.sleep(for: interval)) != nil { await body() }
    }

    /// Readiness: a store that has nothing to commit is still asked whether it could.
    static func pingEvery(_ interval: Duration, store: any PersistentStore, status: NodeStatus) async {
        repeat {
            let limit = Duration.seconds(3)
            let outcome = await withTimeout(limit) { () -> String? in
                do {
                    try await store.ping()
                    return nil
                } catch { return "\(error)" }
            }
            switch outcome {
            case .some(nil): status.recordPing(passing: true, detail: "answers")
            case .some(let error?): status.recordPing(passing: false, detail: "a ping failed: \(error)")
            case nil: status.recordPing(passing: false, detail: "no answer to a ping within \(limit)")
            }
        } while (try? await Task.sleep(for: interval)) != nil
    }
}

extension StarlingConfiguration {
    /// Rows received before this wall-clock time are deleted (ingest.retention).
    func retentionCutoff() -> Int64? {
        broker.ingest.retentionSeconds.map { SystemBrokerClock().wallClockMilliseconds() - $0 * 1000 }
    }
}
