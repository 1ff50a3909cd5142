public import Logging
public import PostgresNIO
import Synchronization

/// The live path's connection pool (`PostgresClient`), which can be made anew.
///
/// After an outage postgres-nio's pool retries its connections with a backoff that grows to a
/// minute (and opens a circuit breaker after 15 s of failures), so a node whose replay line
/// already reaches PostgreSQL again could wait that long before its commits and claims do. When
/// the spool's replay starts (the database answers), `renew()` puts a fresh pool in place: new
/// statements go to it at once, and the old one is closed (statements still waiting there fail
/// as unreachable and are retried or spooled by their callers).
public final class PostgresPool: Sendable {
    let configuration: PostgresClient.Configuration?
    let logger: Logger
    private let current: Mutex<PostgresClient>
    private let renewals: AsyncStream<PostgresClient>
    private let renewalContinuation: AsyncStream<PostgresClient>.Continuation

    public init(configuration: PostgresClient.Configuration, logger: Logger) {
        (self.configuration, self.logger) = (configuration, logger)
        self.current = Mutex(PostgresClient(configuration: configuration, backgroundLogger: logger))
        (renewals, renewalContinuation) = AsyncStream.makeStream()
    }

    /// A pool that is never renewed (tests, tools).
    public init(client: PostgresClient, logger: Logger) {
        self.configuration = nil
        self.logger = logger
        self.current = Mutex(client)
        (renewals, renewalContinuation) = AsyncStream.makeStream()
    }

    /// The pool statements go to now.
    public var client: PostgresClient { current.withLock { $0 } }

    /// Runs the pool (and each renewed one) until cancelled.
    public func run() async {
        let first = client
        var running = Task { await first.run() }
        for await fresh in renewals {
            let old = running
            running = Task { await fresh.run() }
            old.cancel()
        }
        running.cancel()
        await running.value
    }

    /// Puts a fresh pool in place of the current one (a no-op for a pool made from a client).
    public func renew() {
        guard let configuration else { return }
        let fresh = PostgresClient(configuration: configuration, backgroundLogger: logger)
        current.withLock { $0 = fresh }
        renewalContinuation.yield(fresh)
        logger.notice("PostgreSQL answers again: a fresh connection pool replaces the one that was backing off")
    }
}
