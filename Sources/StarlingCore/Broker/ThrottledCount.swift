import NIOCore

/// Counts something that is logged at most once per `interval` (dropped messages): each report
/// says how many happened since the last one.
struct ThrottledCount {
    let interval: TimeAmount
    private var last: NIODeadline?
    private var since = 0

    init(interval: TimeAmount) {
        self.interval = interval
    }

    /// Counts `count` more at `now`; returns how many to report when a report is due.
    mutating func add(_ count: Int, now: NIODeadline) -> Int? {
        since += count
        if let last, now - last < interval { return nil }
        last = now
        defer { since = 0 }
        return since
    }
}
