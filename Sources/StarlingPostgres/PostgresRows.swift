public import Logging
import NIOCore
public import PostgresNIO

/// Reading a statement's rows whole, as postgres-nio's `EventLoopFuture` interface does: every
/// batch of rows is taken and more asked for on the connection's event loop, in the same turn.
///
/// postgres-nio 1.33's async row sequence asks for more only when its consumer (a task) does; a
/// connection that the server closes in between (a database restart, `pg_terminate_backend`)
/// reaches its `RowStreamStateMachine.channelReadComplete` in a state it declares impossible, and
/// the process stops on that precondition. Long reads (a claim or a start-up reading a large
/// queue) had that window at every batch. Every read of more than a row goes through here.
extension PostgresConnection {
    public func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        let result: EventLoopFuture<PostgresQueryResult> = self.query(query, logger: logger)
        return try await result.get().rows
    }
}

extension PostgresClient {
    public func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in try await connection.rows(query, logger: logger) }
    }
}
