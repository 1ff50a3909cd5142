/// The spool replay's own way to the primary (README "SQLite fallback"; docs/architecture.md
/// "Fencing"), apart from whatever pool the live commits use: after an outage a pool may still
/// be backing off for seconds, and a query stuck on a connection whose loss was never reported
/// may never end. The replay must start within seconds of the primary answering (G7) and must
/// know that no commit it tried before can still land behind it.
public protocol ReplayLine: Sendable {
    /// A round trip on the line (opened now if it is not open).
    func ping() async throws
    /// Ends every other session this node holds with the primary, so each transaction one of
    /// them was running has committed or aborted for good: the batch in doubt is decided, never
    /// committed late behind the replay.
    func endEarlierSessions() async throws
    /// Applies the operations in one transaction.
    func apply(_ operations: [StoreOperation]) async throws
    /// The last spool batch the primary has recorded as replayed (`StoreOperation.markReplayed`).
    func replayedThrough(spool: String) async throws -> Int64
    /// Drops the line after a call that did not answer in time: the next call opens a new one.
    func reset()
    /// Tells the primary whether this node is replaying `spool` (claims of sessions this node
    /// held wait for the end of its replay).
    func replayPending(spool: String, _ pending: Bool) async throws
}

/// The line of a primary that has no pool: the primary itself.
struct PrimaryLine: ReplayLine {
    let primary: any PersistentStore

    func ping() async throws { try await primary.ping() }
    func endEarlierSessions() async throws {}
    func apply(_ operations: [StoreOperation]) async throws { try await primary.apply(operations) }
    func replayedThrough(spool: String) async throws -> Int64 { try await primary.replayedThrough(spool: spool) }
    func reset() {}
    func replayPending(spool _: String, _: Bool) async throws {}
}
