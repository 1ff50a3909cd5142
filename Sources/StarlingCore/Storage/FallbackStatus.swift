/// Where a `FallbackStore` is.
public struct FallbackStatus: Sendable, Equatable {
    public enum Mode: String, Sendable {
        /// Commits go to the primary.
        case direct
        /// The primary cannot be reached: commits go to the spool.
        case spooling
        /// The primary is back: the spool is being replayed into it; new commits queue behind.
        case replaying
    }

    public var mode = Mode.direct
    /// Batches and bytes in the spool now.
    public var spooledBatches = 0
    public var spooledBytes = 0
    /// True while the spool is over its limit and commits wait.
    public var full = false
    /// Commits waiting for the last transaction of a replay, to go to the primary after it.
    public var commitsWaitingForReplay = 0
    /// Since the start: operations committed to the spool, and replayed into the primary.
    public var spooledOperations: UInt64 = 0
    public var replayedOperations: UInt64 = 0
    public var replayedBatchesTotal: UInt64 = 0
    /// Outages since the start, the one going on, and the time spent in past ones.
    public var outages: UInt64 = 0
    public var outageStarted: ContinuousClock.Instant?
    public var outageSeconds = 0.0
    /// Started on the spool: the primary's state is loaded when it is back.
    public var stateDeferred = false
    public var lastError: String?

    public init() {}

    /// Seconds of outage so far, the current one included.
    public var outageSecondsTotal: Double {
        outageSeconds + (outageStarted.map { (ContinuousClock.now - $0).seconds } ?? 0)
    }
}

extension Duration {
    public var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }

    /// Whole milliseconds, for logs.
    public var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
