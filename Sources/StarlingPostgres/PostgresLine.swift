public import Logging
import NIOCore
public import PostgresNIO
import Synchronization

/// One connection to PostgreSQL of its own, outside `PostgresClient`'s pool: opened when first
/// needed, dropped after a failure or a statement that does not answer within `timeout`, and
/// opened again at the next call, at once. After an outage the pool retries its connections
/// with a backoff that grows to a minute (postgres-nio's, not ours to set); what must not wait
/// for it goes through a line: the spool replay (`PostgresReplayLine`) and the cluster lease
/// (`PostgresMembership`), so a node that reaches the database serves (G7).
public final class PostgresLine: Sendable {
    let configuration: PostgresConnection.Configuration
    let timeout: Duration
    let logger: Logger
    private let held = Mutex<PostgresConnection?>(nil)

    /// A statement on a line did not answer in time; the line was dropped.
    public struct Timeout: Error, CustomStringConvertible {
        public var limit: Duration
        public var description: String { "PostgreSQL did not answer within \(limit)" }
    }

    /// - Parameter name: the connection's `application_name` (seen in `pg_stat_activity`).
    public init(configuration: PostgresConnection.Configuration, name: String, timeout: Duration, logger: Logger) {
        var configuration = configuration
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.additionalStartupParameters.removeAll { $0.0 == "application_name" }
        configuration.options.additionalStartupParameters.append(("application_name", String(name.prefix(63))))
        (self.configuration, self.timeout, self.logger) = (configuration, timeout, logger)
    }

    private func connection() async throws -> PostgresConnection {
        if let open = held.withLock({ $0 }), !open.isClosed { return open }
        let opened = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        let previous = held.withLock { held in
            defer { held = opened }
            return held
        }
        if let previous { Self.close(previous) }
        return opened
    }

    /// Runs `body` on the line's connection within `timeout` (or `limit`); a failure or the
    /// time-out drops the connection, which ends a statement still waiting on it.
    public func run<T: Sendable>(limit: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws
        -> T
    {
        let limit = limit ?? timeout
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                let connection = try await self.connection()
                return try await body(connection)
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            do {
                guard let first = try await group.next(), let value = first else {
                    reset()
                    throw Timeout(limit: limit)
                }
                return value
            } catch {
                reset()
                throw error
            }
        }
    }

    /// Runs one statement and reads its rows with `read`, on the line.
    public func query<T: Sendable>(_ query: PostgresQuery, _ read: @escaping @Sendable (PostgresRowSequence) async throws -> T) async throws
        -> T
    {
        let logger = self.logger
        return try await run { connection in try await read(try await connection.query(query, logger: logger)) }
    }

    /// Drops the connection (the next call opens a new one).
    public func reset() {
        let open = held.withLock { held in
            defer { held = nil }
            return held
        }
        if let open { Self.close(open) }
    }

    /// Closes the line for good (at shutdown).
    public func close() async {
        let open = held.withLock { held in
            defer { held = nil }
            return held
        }
        if let open { try? await open.close() }
    }

    /// Closes without waiting. The connection is kept until its channel is closed: released
    /// while still active, postgres-nio's debug builds stop the process ("deinitialized before
    /// being closed").
    private static func close(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in withExtendedLifetime(connection) {} }
    }
}
