public import Logging
import NIOPosix
import NIOSSL
import ServiceLifecycle
import StarlingCore
import StarlingOps
import StarlingPostgres

/// The node as a tree of services (docs/architecture.md "The process"). `run` opens the store
/// and builds one `ServiceGroup`; the group starts every service and, at SIGTERM / SIGINT or
/// when one ends, stops them in the reverse order of this list, each after those below it:
///
/// 1. operations HTTP (`/readyz` answers 503 through the whole drain; stops last)
/// 2. the PostgreSQL client (the drain's last commits still reach PostgreSQL)
/// 3. the broker's event loop (the node links and the group commit run on it)
/// 4. the spool's replay
/// 5. cluster membership: the lease, the links, the partition check (leaves after the drain)
/// 6. the dead-node sweeper
/// 7. the broker with its listeners (drains first)
/// 8. the store's maintenance (garbage collection, retention, users, readiness ping)
///
/// Services that wait for another (the cluster for the broker's address, the broker for the
/// join) get what they wait for through a `Handoff`.
public struct StarlingNode: Sendable {
    public static let version = "0.1.0"

    public let configuration: StarlingConfiguration
    let logger: Logger
    /// What `/healthz`, `/readyz` and `/metrics` report (see `OpsServer`).
    public let status: NodeStatus
    /// Called once the listeners are bound, with each one's scheme (mqtt, mqtts, ws, wss,
    /// cluster; http on its own) and bound address (port 0 resolved).
    let onListening: @Sendable ([(scheme: String, address: String)]) -> Void

    public init(
        configuration: StarlingConfiguration, logger: Logger, status: NodeStatus = NodeStatus(),
        onListening: @escaping @Sendable ([(scheme: String, address: String)]) -> Void = { _ in }
    ) {
        (self.configuration, self.logger, self.status, self.onListening) = (configuration, logger, status, onListening)
    }

    public func run() async throws {
        let tls = try configuration.makeTLSContext()
        let setup = configuration.inMemory ? nil : try StoreSetup.open(configuration, logger: logger)
        let services = services(setup: setup, tls: tls)
        // Any service that ends, by success or failure, stops the node; a failure is rethrown
        // once the others have stopped (exit 1, or 2 for a configuration error).
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map {
                    .init(
                        service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await serviceGroup.run()
    }

    /// The node's services in their start order (the group stops them in the reverse one).
    func services(setup: StoreSetup?, tls: NIOSSLContext?) -> [any Service] {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        // Password hashing runs here, never on the broker's loop.
        let hashing = NIOThreadPool(numberOfThreads: 1)
        hashing.start()
        let authenticator = PasswordAuthenticator(policy: configuration.allowAnonymous, loop: loop, hashing: hashing)
        let broker = Broker(
            configuration: configuration.broker,
            authenticator: authenticator,
            authorizer: RuleAuthorizer(rules: configuration.authorizationRules),
            logger: logger.component("broker"),
            version: "starling \(Self.version)"
        )
        let listening = Handoff<String>()
        let serving = Handoff<Void>()
        let clustered = configuration.clusterListen != nil && setup?.postgres != nil
        let joined = clustered ? Handoff<JoinedCluster>() : nil

        var services: [any Service] = []
        if let http = configuration.httpListen {
            let admin = configuration.adminToken.isEmpty ? nil : (source: status as any AdminSource, token: configuration.adminToken)
            let onListening = self.onListening
            services.append(
                OpsServer(host: http.host, port: http.port, source: status, admin: admin, logger: logger) { address in
                    onListening([("http", address)])
                })
        }
        if let setup, let pool = setup.postgresPool { services.append(PostgresClientService(pool: pool, setup: setup)) }
        services.append(EventLoopService(group: group, hashing: hashing, status: status, logger: logger))
        if let fallback = setup?.fallback { services.append(SpoolReplayService(fallback: fallback)) }
        if let joined, let listen = configuration.clusterListen, let setup, let postgres = setup.postgres {
            var clusterLogger = logger.component("cluster")
            clusterLogger[metadataKey: "starling.node"] = "\(configuration.broker.ingest.nodeID)"
            services.append(
                ClusterService(
                    configuration: configuration, listen: listen, ownership: postgres.ownership,
                    leaseStore: setup.leaseStore ?? PostgresMembership(store: postgres), group: group, broker: broker, loop: loop,
                    status: status, listening: listening, joined: joined, logger: clusterLogger))
            services.append(
                SweeperService(ownership: postgres.ownership, broker: broker, loop: loop, joined: joined, logger: clusterLogger))
        }
        services.append(
            BrokerService(
                configuration: configuration, broker: broker, loop: loop, authenticator: authenticator, setup: setup, tls: tls,
                status: status, listening: listening, joined: joined, serving: serving, onListening: onListening, logger: logger))
        if let store = setup?.store {
            services.append(
                StoreMaintenanceService(
                    store: store, configuration: configuration, authenticator: authenticator, status: status, serving: serving,
                    logger: logger))
        }
        return services
    }
}

extension Logger {
    /// This logger with `starling.component` set.
    func component(_ name: String) -> Logger {
        var logger = self
        logger[metadataKey: "starling.component"] = "\(name)"
        return logger
    }
}

public struct StartupError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension StarlingNode {
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
