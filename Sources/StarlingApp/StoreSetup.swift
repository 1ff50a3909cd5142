import Foundation
import Logging
import NIOCore
import PostgresNIO
import StarlingCore
import StarlingPostgres
import StarlingSQLite

/// Opens the configured store: PostgreSQL when a URL is given, else SQLite in the data
/// directory. A store that cannot be reached or migrated at start is a `StartupError` (exit 1).
struct StoreSetup {
    let store: any PersistentStore
    /// The PostgreSQL pool, which must run while the store is used.
    let postgresPool: PostgresPool?
    let description: String
    /// PostgreSQL itself, for what needs it live (cluster membership, session claims).
    var postgres: PostgresStore?
    /// With PostgreSQL: the cluster lease's store, on a connection of its own (`PostgresMembership`).
    var leaseStore: PostgresMembership?
    /// With PostgreSQL and the spool: the replay's line.
    var replayLine: PostgresReplayLine?

    /// Closes the connections outside the pool (at shutdown, after the pool's last commit).
    func closeLines() async {
        await leaseStore?.close()
        await replayLine?.close()
    }
    /// With PostgreSQL: the store in front of it that spools while it cannot be reached.
    var fallback: FallbackStore? { store as? FallbackStore }

    /// With `spooling`, PostgreSQL is fronted by a `FallbackStore` whose spool is
    /// `storage.data_dir/spool.db` (not for `starling ctl`, which acts on PostgreSQL itself).
    static func open(_ configuration: StarlingConfiguration, logger: Logger, spooling: Bool = true) throws -> StoreSetup {
        let directory = configuration.dataDirectory
        if configuration.postgresURL == nil || spooling {  // SQLite's directory, or the spool's
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StartupError(
                    message: "cannot create the data directory \(directory) (storage.data_dir): \(error.localizedDescription)")
            }
        }
        if let url = configuration.postgresURL {
            guard var clientConfiguration = PostgresStore.configuration(url: url) else {
                throw StartupError(message: "storage.postgres_url is not a postgres://user:password@host:port/database URL")
            }
            clientConfiguration.options.connectTimeout = .seconds(5)
            let masked = ConfigurationError.maskingPassword(url)
            // In a cluster, the session rows this node writes are its own (restored by it alone).
            let owner = configuration.clusterListen == nil ? nil : configuration.broker.ingest.nodeID
            let schema = PostgresStore.schema(url: url)
            guard spooling else {
                let pool = PostgresPool(configuration: clientConfiguration, logger: logger)
                let store = PostgresStore(pool: pool, logger: logger, schema: schema, ownerNode: owner)
                return StoreSetup(store: store, postgresPool: pool, description: "PostgreSQL \(masked)", postgres: store)
            }
            let spoolPath = (directory as NSString).appendingPathComponent("spool.db")
            let spool: SQLiteSpool
            do {
                spool = try SQLiteSpool(path: spoolPath, synchronous: configuration.sqliteSynchronous)
            } catch {
                throw StartupError(message: "cannot open the spool \(spoolPath) (storage.data_dir): \(error)")
            }
            // The pool's connections carry the spool's name, so its replay can end them first
            // (`PostgresReplayLine`): no commit tried before an outage lands behind the replay.
            let tag = PostgresReplayLine.tag(spool: spool.id)
            clientConfiguration.options.additionalStartupParameters.append(("application_name", tag))
            let pool = PostgresPool(configuration: clientConfiguration, logger: logger)
            let store = PostgresStore(pool: pool, logger: logger, schema: schema, ownerNode: owner)
            let line = PostgresStore.connectionConfiguration(url: url).map {
                PostgresReplayLine(configuration: $0, tag: tag, owner: owner, logger: logger)
            }
            let pause = ProcessInfo.processInfo.environment["STARLING_TEST_REPLAY_PAUSE"].flatMap { Int($0) }
            let fallback = FallbackStore(
                primary: store, spool: spool, line: line, logger: logger, maxBytes: configuration.spoolMaxBytes,
                pauseReplayAfter: pause)
            // The lease's statements answer within a renewal interval or count as failed.
            let leaseStore = PostgresStore.connectionConfiguration(url: url).map {
                PostgresMembership(line: PostgresLine(configuration: $0, name: tag + "/lease", timeout: .seconds(1), logger: logger))
            }
            return StoreSetup(
                store: fallback, postgresPool: pool, description: "PostgreSQL \(masked) (spool \(spoolPath))", postgres: store,
                leaseStore: leaseStore, replayLine: line)
        }
        let path = (directory as NSString).appendingPathComponent("starling.db")
        do {
            let synchronous = configuration.sqliteSynchronous
            return StoreSetup(
                store: try SQLiteStore(path: path, synchronous: synchronous), postgresPool: nil, description: "SQLite \(path)")
        } catch {
            throw StartupError(message: "cannot open the SQLite store \(path): \(error)")
        }
    }

    /// Migrates and loads, failing with a clear message when the store is unreachable.
    func migrateAndLoad(timeout: Duration = .seconds(20)) async throws -> StoredState {
        let store = self.store
        let description = self.description
        return try await withThrowingTaskGroup(of: StoredState?.self) { group in
            group.addTask {
                do {
                    try await store.migrate()
                    return try await store.load()
                } catch {
                    throw StartupError(message: "cannot use the store (\(description)): \(String(reflecting: error))")
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let state = first else {
                throw StartupError(message: "the store (\(description)) did not answer within \(timeout)")
            }
            return state
        }
    }
}
