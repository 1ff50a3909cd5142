public import Logging
import MQTTCodec
import NIOCore
import NIOPosix
import NIOSSL
public import ServiceLifecycle
import StarlingCluster
import StarlingCore
import StarlingPostgres
import StarlingTransport

/// The broker as a `Service`: binds the MQTT listeners, runs the broker on its event loop, and
/// on graceful shutdown stops accepting, disconnects clients (5.0: DISCONNECT 0x8B) and closes.
public final class StarlingServer: Service, Sendable {
    public let configuration: StarlingConfiguration
    let logger: Logger
    /// Called once every listener is bound, with each one's scheme (mqtt, mqtts, ws, wss) and
    /// bound address (port 0 resolved).
    let onListening: @Sendable ([(scheme: String, address: String)]) -> Void
    /// What `/healthz`, `/readyz` and `/metrics` report (see `OpsServer`).
    public let status: NodeStatus

    public init(
        configuration: StarlingConfiguration, logger: Logger, status: NodeStatus = NodeStatus(),
        onListening: @escaping @Sendable ([(scheme: String, address: String)]) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.status = status
        self.onListening = onListening
    }

    /// Runs `body` with the store every `interval` (first after `initialDelay`, default one
    /// interval), one run at a time, until cancelled; nil without a store. A task of its own, not
    /// the broker's loop: a run still waiting for an unreachable store when the node stops
    /// finishes without scheduling anything on the stopped loop.
    static func repeatedly(
        with store: (any PersistentStore)?, every interval: TimeAmount, initialDelay: TimeAmount? = nil,
        _ body: @escaping @Sendable (any PersistentStore) async -> Void
    ) -> Task<Void, Never>? {
        guard let store else { return nil }
        return Task {
            var delay = initialDelay ?? interval
            while (try? await Task.sleep(for: .nanoseconds(delay.nanoseconds))) != nil {
                await body(store)
                delay = interval
            }
        }
    }

    /// How often the users are read again from the store.
    static let userRefreshInterval = TimeAmount.seconds(2)

    /// How often readiness pings the store (a ping may take 3 s): with PostgreSQL, an idle
    /// node also learns here that it must spool (`FallbackStore.ping`).
    static let storePingInterval = TimeAmount.seconds(1)

    public static let version = "0.1.0"

    /// Rows received before this wall-clock time are deleted (ingest.retention).
    func retentionCutoff() -> Int64? {
        configuration.broker.ingest.retentionSeconds.map { SystemBrokerClock().wallClockMilliseconds() - $0 * 1000 }
    }

    public func run() async throws {
        let tls = try configuration.makeTLSContext()
        let setup = configuration.inMemory ? nil : try StoreSetup.open(configuration, logger: logger)
        // The PostgreSQL client closes last, after the drain has committed what was pending. It
        // is a service that stops at the graceful-shutdown signal, which would take the pending
        // commits with it: it runs detached from that signal and is cancelled here instead.
        let client = setup?.postgresPool.map { pool in Task.detached { await pool.run() } }
        do {
            try await serve(store: setup, tls: tls)
        } catch {
            client?.cancel()
            await client?.value
            await setup?.closeLines()
            throw error
        }
        client?.cancel()
        await client?.value
        await setup?.closeLines()
    }

    private func serve(store setup: StoreSetup?, tls: NIOSSLContext?) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        // Password hashing runs here, never on the broker's loop.
        let hashing = NIOThreadPool(numberOfThreads: 1)
        hashing.start()
        defer { hashing.shutdownGracefully { _ in } }
        let authenticator = PasswordAuthenticator(policy: configuration.allowAnonymous, loop: loop, hashing: hashing)
        var brokerLogger = logger
        brokerLogger[metadataKey: "starling.component"] = "broker"
        let broker = Broker(
            configuration: configuration.broker,
            authenticator: authenticator,
            authorizer: RuleAuthorizer(rules: configuration.authorizationRules),
            logger: brokerLogger,
            version: "starling \(Self.version)"
        )

        status.attach(broker: broker, loop: loop, store: setup?.description, fallback: setup?.fallback)
        status.enter(.restoring)

        // Migrate and restore before any listener accepts.
        if let setup {
            logger.notice("store: \(setup.description)")
            // While PostgreSQL is away the broker refuses what needs it (Broker.outageRefusal).
            // When PostgreSQL answers again the replay starts, and a fresh pool takes the live
            // path's statements (the old one may still be backing off: PostgresPool).
            let pool = setup.postgresPool
            await setup.fallback?.setOnModeChange { mode in
                if mode == .replaying { pool?.renew() }
                loop.execute { broker.storeModeChanged(spooling: mode == .spooling, replaying: mode == .replaying) }
            }
            let state: StoredState
            do {
                state = try await setup.migrateAndLoad()
            } catch {
                try? await group.shutdownGracefully()
                throw error
            }
            let deferred = setup.fallback?.status.stateDeferred ?? false
            if deferred {
                authenticator.usersAreUnknown()
                // Started on the spool: the state comes once PostgreSQL is back and the spool replayed.
                await setup.fallback?.setOnRecovered { [logger] in
                    Task {
                        do {
                            let state = try await setup.store.load()
                            authenticator.replaceUsers(try await setup.store.loadUsers())
                            try await loop.submit { broker.adoptDeferredState(state) }.get()
                        } catch {
                            logger.error("could not load the store's state after the outage; restart the node to load it: \(error)")
                        }
                    }
                }
            } else {
                authenticator.replaceUsers(try await setup.store.loadUsers())
            }
            if authenticator.userCount > 0 { logger.notice("password authentication: \(authenticator.userCount) users") }
            // Partitions ahead and retention before accepting.
            _ = try? await setup.store.enforceRetention(before: retentionCutoff(), now: SystemBrokerClock().wallClockMilliseconds())
            let writer = GroupCommitWriter(store: setup.store, eventLoop: loop, logger: brokerLogger)
            writer.commitDelay = .milliseconds(Int64(configuration.commitDelayMilliseconds))
            writer.backlogLimit = configuration.maxPendingWrites
            try await loop.submit {
                broker.persistence = writer
                writer.onCommitted = { broker.flush() }
                if deferred { broker.restoreDeferred() } else { broker.restore(state) }
            }.get()
        } else {
            logger.notice("store: none (storage.in_memory = true): nothing survives a restart")
        }

        var listeners: [(ListenAddress, ListenerKind)] = configuration.listeners.map { ($0, .tcp) }
        let path = configuration.webSocketPath
        listeners += configuration.webSocketListeners.map { ($0, .webSocket(path: path)) }
        if let tls {
            listeners += configuration.tlsListeners.map { ($0, .tls(tls)) }
            listeners += configuration.secureWebSocketListeners.map { ($0, .secureWebSocket(tls, path: path)) }
        }
        var channels: [any Channel] = []
        var bound: [(scheme: String, address: String)] = []
        var logged: [String] = []
        do {
            for (address, kind) in listeners {
                let channel = try await MQTTListener.bind(
                    address, kind: kind, proxyProtocol: configuration.proxyProtocol,
                    trustedProxies: configuration.webSocketTrustedProxies, broker: broker, eventLoop: loop,
                    maximumPacketSize: configuration.broker.maxPacketSize)
                channels.append(channel)
                if let text = ListenAddress(bound: channel.localAddress)?.description {
                    bound.append((kind.scheme, text))
                    logged.append("listening for \(kind.name) on \(text)")
                }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            try? await group.shutdownGracefully()
            let all = listeners.map { "\($1.scheme)://\($0)" }.joined(separator: ", ")
            throw StartupError(message: "cannot listen on \(all): \(error)")
        }
        for line in logged { logger.notice("\(line)") }

        // Join the cluster before serving: a duplicate node id must not serve at all.
        var cluster: (membership: ClusterMembership, links: ClusterLinks, listener: any Channel, renewal: Task<Void, Never>)?
        if let listen = configuration.clusterListen, let postgres = setup?.postgres {
            do {
                cluster = try await joinCluster(
                    listen: listen, ownership: postgres, lease: setup?.leaseStore ?? PostgresMembership(store: postgres),
                    group: group, broker: broker, loop: loop,
                    mqttAddress: bound.first?.address ?? "?")
            } catch {
                for channel in channels { try? await channel.close() }
                try? await group.shutdownGracefully()
                throw error
            }
            bound.append(("cluster", cluster!.membership.registration.clusterAddress))
            status.attach(cluster: cluster!.membership, links: cluster!.links.links)
        }
        status.listening(on: channels)
        status.enter(.serving)
        onListening(bound)

        let ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in broker.tick() }
        let store = setup?.store
        let collector = Self.repeatedly(with: store, every: .seconds(30)) { store in
            _ = try? await store.collectGarbage()
        }
        let retention = Self.repeatedly(with: store, every: .minutes(10)) { store in
            do {
                _ = try await store.enforceRetention(before: self.retentionCutoff(), now: SystemBrokerClock().wallClockMilliseconds())
            } catch {
                self.logger.warning("ingest retention failed; will retry: \(error)")
            }
        }
        // Users added or removed with `starling ctl users` take effect within seconds.
        let userRefresh = Self.repeatedly(with: store, every: Self.userRefreshInterval) { store in
            if let users = try? await store.loadUsers() { authenticator.replaceUsers(users) }
        }
        // Readiness: a store that has nothing to commit is still asked whether it could.
        let status = self.status
        let pinger = Self.repeatedly(with: store, every: Self.storePingInterval, initialDelay: .zero) { store in
            let limit = Duration.seconds(3)
            let outcome = await withTimeout(limit) { () -> String? in
                do { try await store.ping(); return nil } catch { return "\(error)" }
            }
            switch outcome {
            case .some(nil): status.recordPing(passing: true, detail: "answers")
            case .some(let error?): status.recordPing(passing: false, detail: "a ping failed: \(error)")
            case nil: status.recordPing(passing: false, detail: "no answer to a ping within \(limit)")
            }
        }

        // Wait for SIGTERM / SIGINT (graceful shutdown) or cancellation.
        try? await gracefulShutdown()
        status.enter(.draining)
        logger.notice(
            "shutting down: /readyz answers 503; clients are disconnected in \(configuration.drainWait) s, \(configuration.drainRate) per second"
        )
        if let cluster { await cluster.membership.announce(.draining) }
        // Balancers notice the 503 and send new clients elsewhere; clients here keep working.
        if configuration.drainWait > 0 { try? await Task.sleep(for: .milliseconds(Int64(configuration.drainWait * 1000))) }
        // Drain in reverse: stop accepting, disconnect clients, flush state, stop the loop.
        for channel in channels { try? await channel.close() }
        ticker.cancel()
        for task in [pinger, userRefresh, collector, retention] { task?.cancel() }
        // Clients go at a bounded rate (5.0: DISCONNECT 0x8B, or 0x9C with server.reference),
        // so the other nodes take a stream of reconnections rather than a storm.
        let reason: MQTTReasonCode = configuration.serverReference == nil ? .serverShuttingDown : .useAnotherServer
        let reference = configuration.serverReference
        let batch = max(1, configuration.drainRate / 10)
        while let remaining = try? await loop.submit({ broker.drain(upTo: batch, reason: reason, serverReference: reference) }).get(),
            remaining > 0
        {
            try? await Task.sleep(for: .milliseconds(100))
        }
        try? await loop.submit { broker.shutdown(reason: reason, serverReference: reference) }.get()
        if let writer = try? await loop.submit({ broker.persistence }).get() {
            try? await writer.drain().get()
        }
        if let cluster {
            // Renewal and sweeping hand their results to the loop: they end before it does.
            cluster.renewal.cancel()
            await cluster.renewal.value
            await cluster.membership.leave()
            cluster.links.closeAll()
            try? await cluster.listener.close()
        }
        status.detachBroker()
        try? await group.shutdownGracefully()
        status.enter(.stopped)
        logger.notice("stopped")
    }
}

extension StarlingServer {
    /// Binds the node-to-node listener, claims the node id (a live node with the same id is a
    /// configuration error: exit 2), and starts renewing the lease and dialing peers.
    func joinCluster(
        listen: ListenAddress, ownership: any SessionOwnershipStore, lease leaseStore: any MembershipStore, group: any EventLoopGroup,
        broker: Broker, loop: any EventLoop,
        mqttAddress: String
    ) async throws -> (ClusterMembership, ClusterLinks, any Channel, Task<Void, Never>) {
        var clusterLogger = logger
        clusterLogger[metadataKey: "starling.component"] = "cluster"
        let nodeID = configuration.broker.ingest.nodeID
        clusterLogger[metadataKey: "starling.node"] = "\(nodeID)"
        let router = ClusterRouter(loop: loop, logger: clusterLogger)
        let links = ClusterLinks(
            nodeID: nodeID, secret: configuration.clusterSecret, group: group, router: router, logger: clusterLogger,
            serverTLS: configuration.clusterTLS ? try configuration.makeTLSContext() : nil,
            clientTLS: try configuration.makeClusterClientTLSContext(), linkBuffer: configuration.clusterLinkBuffer)
        let listener: any Channel
        do {
            listener = try await links.bind(host: listen.host, port: listen.port)
        } catch {
            throw StartupError(message: "cannot listen for the cluster on \(listen) (cluster.listen): \(error)")
        }
        var advertise = configuration.clusterAdvertise ?? ListenAddress(bound: listener.localAddress)?.description ?? listen.description
        if configuration.clusterAdvertise == nil, ["0.0.0.0", "::"].contains(listen.host), let port = listener.localAddress?.port {
            advertise = ListenAddress(host: StarlingConfiguration.hostName(), port: port).description
        }
        // This process holds the data directory for its life: the node's previous start here is
        // gone, and its row is taken over at once (DataDirectoryLock).
        let directoryLock: DataDirectoryLock
        do {
            directoryLock = try DataDirectoryLock.acquire(directory: configuration.dataDirectory, nodeID: nodeID)
        } catch {
            try? await listener.close()
            throw error
        }
        let incarnation = Int64.random(in: 1...Int64.max)
        let registration = NodeRegistration(
            nodeID: nodeID, incarnation: incarnation, mqttAddress: mqttAddress,
            clusterAddress: advertise, httpAddress: configuration.httpListen?.description,
            predecessor: directoryLock.predecessor)
        let membership = ClusterMembership(
            registration: registration, store: leaseStore, lease: .milliseconds(Int64(configuration.clusterLeaseTimeout * 1000)),
            logger: clusterLogger,
            clientCount: { (try? await loop.submit { broker.connectedClientCount }.get()) ?? 0 })
        membership.onView { nodes in
            links.reconcile(with: nodes)
            let live = nodes.count { $0.isLive }
            loop.execute { router.liveNodes = live }
        }
        do {
            try await membership.join()
        } catch let inUse as ClusterMembership.NodeIDInUse {
            try? await listener.close()
            throw ConfigurationError(
                key: "server.node_id", value: "\"\(nodeID)\"", allowed: "an id no live node uses: \(inUse)",
                source: "--node-id or the configuration")
        } catch {
            try? await listener.close()
            throw StartupError(message: "cannot join the cluster through the store: \(error)")
        }
        directoryLock.record(nodeID: nodeID, incarnation: incarnation)
        // Ids this node generates never collide with another node's (message ids, sequences).
        let block = try await leaseStore.allocateIDBlock()
        let directory = try await ownership.loadDirectory()
        try await loop.submit {
            broker.generateIDs(inBlock: block)
            router.broker = broker
            router.ownership = ownership
            broker.cluster = router
            broker.directoryChanged(directory)
        }.get()
        // The lease renewal, each second the lease's word to the peers (and the partition
        // check: ClusterRouter+Partition.swift) and the dead-node clean-up; all stop when this
        // task is cancelled.
        let background = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await membership.run() }
                group.addTask {
                    var seconds = 0
                    while (try? await Task.sleep(for: .seconds(1))) != nil {
                        router.leaseChecked(membership.lease)
                        seconds += 1
                        if seconds % ClusterRouter.pickupInterval == 0 { loop.execute { router.pickUpLostCopies() } }
                    }
                }
                let sweeper = DeadNodeSweeper(
                    store: ownership, broker: broker, loop: loop, firstToken: Broker.firstID(inBlock: block),
                    logger: clusterLogger, mayJudge: { membership.heldThroughALease })
                group.addTask { await sweeper.run() }
            }
        }
        return (membership, links, listener, background)
    }
}

public struct StartupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension StarlingServer {
    /// `starling migrate`: applies pending migrations and returns a description of the store.
    public static func migrate(_ configuration: StarlingConfiguration, logger: Logger) async throws -> String {
        try await withStore(configuration, logger: logger) { _, description in description }
    }

    /// Opens and migrates the configured store, runs `body` with it, and closes it (the
    /// commands that work on the store without serving: `migrate`, `ctl users`).
    static func withStore<T: Sendable>(
        _ configuration: StarlingConfiguration, logger: Logger,
        _ body: @Sendable (any PersistentStore, String) async throws -> T
    ) async throws -> T {
        // A tool's failures are its thrown errors; the pool's start-up and shut-down notices
        // (a lease asked for before `run()` began, connections closed at the end) are noise.
        var quiet = logger
        quiet.logLevel = .error
        let setup = try StoreSetup.open(configuration, logger: quiet, spooling: false)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            if let pool = setup.postgresPool { group.addTask { await pool.run() } }
            defer { group.cancelAll() }
            _ = try await setup.migrateAndLoad()
            return try await body(setup.store, setup.description)
        }
    }
}
