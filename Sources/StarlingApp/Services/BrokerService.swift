import Logging
import MQTTCodec
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import StarlingCluster
import StarlingCore
import StarlingPostgres
import StarlingTransport

/// The broker with its MQTT listeners: restores the store's state, binds the listeners, waits
/// for the cluster's join (a duplicate node id must not serve at all), serves; at the graceful
/// shutdown it drains — readiness 503, then clients disconnected at `drain.rate` (5.0: DISCONNECT
/// 0x8B, or 0x9C with `server.reference`) — and commits what is pending. It stops first.
struct BrokerService: Service {
    let configuration: StarlingConfiguration
    let broker: Broker
    let loop: any EventLoop
    let authenticator: PasswordAuthenticator
    let setup: StoreSetup?
    let tls: NIOSSLContext?
    let status: NodeStatus
    /// To the cluster: the first MQTT address, once bound.
    let listening: Handoff<String>
    /// From the cluster, when the node is in one.
    let joined: Handoff<JoinedCluster>?
    /// To the store's maintenance: the node serves.
    let serving: Handoff<Void>
    let onListening: @Sendable ([(scheme: String, address: String)]) -> Void
    let logger: Logger

    func run() async throws {
        defer {
            listening.give(nil)
            serving.give(nil)
        }
        status.attach(broker: broker, loop: loop, store: setup?.description, fallback: setup?.fallback)
        status.enter(.restoring)
        // Migrate and restore before any listener accepts.
        if let setup {
            try await restore(from: setup)
        } else {
            logger.notice("store: none (storage.in_memory = true): nothing survives a restart")
        }
        let listeners = try await bindListeners()
        var bound = listeners.bound.map { (scheme: $0.kind.scheme, address: $0.address.description) }
        var cluster: JoinedCluster?
        if let joined {
            listening.give(bound.first?.address ?? "?")
            let waiting = await cancelWhenGracefulShutdown { await joined.value() }
            guard let waiting else {
                // The join failed (the cluster's service says why) or the node stops first.
                await listeners.close()
                return
            }
            cluster = waiting
            bound.append(("cluster", waiting.membership.registration.clusterAddress))
        }
        status.listening(on: await listeners.channels)
        status.enter(.serving)
        onListening(bound)
        serving.give(())

        let broker = self.broker
        let ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in broker.tick() }
        // A node cut off from the store closes its listeners until it reaches the store again
        // (a verdict given before this looked is taken too, in order, on the broker's loop).
        let (verdicts, verdict) = AsyncStream.makeStream(of: Bool.self)
        try await loop.submit {
            broker.observeCutOff { verdict.yield($0) }
            if broker.clusterCutOff { verdict.yield(true) }
        }.get()
        let gate = Task { for await cutOff in verdicts { await listeners.set(open: !cutOff) } }
        // Wait for SIGTERM / SIGINT (graceful shutdown) or cancellation.
        try? await gracefulShutdown()
        verdict.finish()
        await gate.value
        status.enter(.draining)
        logger.notice(
            "shutting down: /readyz answers 503; clients are disconnected in \(configuration.drainWait) s, \(configuration.drainRate) per second"
        )
        if let cluster { await cluster.membership.announce(.draining) }
        // Balancers notice the 503 and send new clients elsewhere; clients here keep working.
        if configuration.drainWait > 0 { try? await Task.sleep(for: .milliseconds(Int64(configuration.drainWait * 1000))) }
        await listeners.close()
        ticker.cancel()
        await drain()
    }

    /// Disconnects the clients at a bounded rate, so the other nodes take a stream of
    /// reconnections rather than a storm, then commits what is pending.
    private func drain() async {
        let broker = self.broker
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
    }

    /// Migrates and loads the store (or starts on the spool), then gives the broker its state and
    /// its group commit.
    private func restore(from setup: StoreSetup) async throws {
        let (broker, loop, authenticator, logger) = (self.broker, self.loop, self.authenticator, self.logger)
        logger.notice("store: \(setup.description)")
        // While PostgreSQL is away the broker refuses what needs it (Broker.outageRefusal).
        // When PostgreSQL answers again the replay starts, and a fresh pool takes the live
        // path's statements (the old one may still be backing off: PostgresPool).
        let pool = setup.postgresPool
        await setup.fallback?.setOnModeChange { mode in
            if mode == .replaying { pool?.renew() }
            loop.execute { broker.storeModeChanged(spooling: mode == .spooling, replaying: mode == .replaying) }
        }
        let state = try await setup.migrateAndLoad()
        let deferred = setup.fallback?.status.stateDeferred ?? false
        if deferred {
            authenticator.usersAreUnknown()
            // Started on the spool: the state comes once PostgreSQL is back and the spool replayed.
            await setup.fallback?.setOnRecovered {
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
        _ = try? await setup.store.enforceRetention(
            before: configuration.retentionCutoff(), now: SystemBrokerClock().wallClockMilliseconds())
        let writer = GroupCommitWriter(store: setup.store, eventLoop: loop, logger: broker.logger)
        writer.commitDelay = .milliseconds(Int64(configuration.commitDelayMilliseconds))
        writer.backlogLimit = configuration.maxPendingWrites
        try await loop.submit {
            broker.persistence = writer
            writer.onCommitted = { broker.flush() }
            if deferred { broker.restoreDeferred() } else { broker.restore(state) }
        }.get()
    }

    /// Every configured MQTT listener (TCP, TLS, WebSocket, secure WebSocket).
    private func configuredListeners() -> [(ListenAddress, ListenerKind)] {
        var listeners: [(ListenAddress, ListenerKind)] = configuration.listeners.map { ($0, .tcp) }
        let path = configuration.webSocketPath
        listeners += configuration.webSocketListeners.map { ($0, .webSocket(path: path)) }
        if let tls {
            listeners += configuration.tlsListeners.map { ($0, .tls(tls)) }
            listeners += configuration.secureWebSocketListeners.map { ($0, .secureWebSocket(tls, path: path)) }
        }
        return listeners
    }

    /// Binds every configured MQTT listener.
    private func bindListeners() async throws -> MQTTListeners {
        let (configuration, broker, loop) = (self.configuration, self.broker, self.loop)
        let bind: MQTTListeners.Bind = { address, kind in
            try await MQTTListener.bind(
                address, kind: kind, proxyProtocol: configuration.proxyProtocol,
                trustedProxies: configuration.webSocketTrustedProxies, broker: broker, eventLoop: loop,
                maximumPacketSize: configuration.broker.maxPacketSize)
        }
        let listeners = configuredListeners()
        var channels: [(ListenAddress, ListenerKind, any Channel)] = []
        do {
            for (address, kind) in listeners {
                let channel = try await bind(address, kind)
                channels.append((ListenAddress(bound: channel.localAddress) ?? address, kind, channel))
            }
        } catch {
            for (_, _, channel) in channels { try? await channel.close() }
            let all = listeners.map { "\($1.scheme)://\($0)" }.joined(separator: ", ")
            throw StartupError(message: "cannot listen on \(all): \(error)")
        }
        for (address, kind, _) in channels { logger.notice("listening for \(kind.name) on \(address)") }
        return MQTTListeners(channels: channels, bind: bind, status: status, logger: logger)
    }
}
