public import NIOCore

/// The local journal a `FallbackStore` commits batches to while its primary store cannot be
/// reached (SQLite in the data directory: `StarlingSQLite.SQLiteSpool`). Batches come back in
/// the order they were appended; an appended batch is durable when `append` returns.
public protocol StoreSpool: Sendable {
    /// Names this spool for ever (a spool file keeps its id), so replay progress recorded in the
    /// primary store belongs to it alone.
    var id: String { get }
    /// Commits a batch; returns its sequence (increasing, never reused). `inDoubt`: a commit
    /// of it to the primary was tried and may have succeeded.
    func append(_ batch: ByteBuffer, inDoubt: Bool) async throws -> Int64
    /// The oldest batches, in order, at most `limit` of them.
    func head(limit: Int) async throws -> [SpooledBatch]
    /// Deletes the batches up to and including `sequence`.
    func remove(through sequence: Int64) async throws
    /// How many batches and bytes the spool holds.
    func totals() async throws -> (batches: Int, bytes: Int)
}

public struct SpooledBatch: Sendable {
    public var sequence: Int64
    public var data: ByteBuffer
    public var inDoubt: Bool

    public init(sequence: Int64, data: ByteBuffer, inDoubt: Bool = false) {
        (self.sequence, self.data, self.inDoubt) = (sequence, data, inDoubt)
    }
}

/// The spool is over `storage.spool_max_bytes`: the batch waits (its acknowledgements with it)
/// and the broker stops reading from publishers until the replay makes room.
public struct StoreFull: Error, CustomStringConvertible {
    public var bytes: Int
    public var limit: Int

    public var description: String {
        "the spool holds \(bytes) bytes, storage.spool_max_bytes is \(limit): acknowledgements wait for the replay to make room"
    }
}
