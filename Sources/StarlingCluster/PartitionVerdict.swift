import NIOCore
import StarlingCore

/// A partition is not a split brain (docs/architecture.md, "Cluster"): the decision, apart from
/// the links and the broker it tells. Every second each node tells its peers how long ago its
/// last lease renewal started. A node whose lease has run out hears whether a peer renewed
/// *after* that and before this node's own latest renewal, which failed, started: then the
/// database is there for the peer and not for this node — it is the one cut off
/// (`LeaseKeeper.peersReachingTheStore`). When no peer renewed since, the database is out for
/// everyone (nobody can renew after an outage began), and each node keeps its clients.
struct PartitionVerdict {
    /// How recent a peer's word must be to count.
    static let leaseWordFreshness = TimeAmount.seconds(3)

    /// What a lease check decided.
    enum Step: Equatable {
        /// The lease is held: serving (`wasCutOff`: the clients were let go; `wasOut`: an
        /// outage or a cut was reported).
        case held(wasCutOff: Bool, wasOut: Bool)
        /// This node is the one cut off: these peers reach the store.
        case cutOff(reaching: [String])
        /// No peer renewed since this lease ran out: a database outage, reported once.
        case outage
        /// Nothing new (the lease never held yet, a verdict already given, too early to tell).
        case unchanged
    }

    /// When each peer last renewed its lease, by this node's clock, and when it said so.
    var peerRenewals: [String: (renewed: NIODeadline, heard: NIODeadline)] = [:]
    /// This node let its clients go for being cut off; until it holds its lease again.
    private(set) var cutOff = false
    private var outageReported = false

    /// A peer's word: its last renewal started `age` milliseconds ago.
    mutating func heard(_ peer: String, renewedMillisecondsAgo age: Int64, now: NIODeadline) {
        guard age >= 0 else { return }
        peerRenewals[peer] = (now - .milliseconds(age), now)
    }

    /// Decides on this node's lease as it stands `now`.
    mutating func check(_ lease: LeaseView, now: NIODeadline) -> Step {
        if lease.held {
            defer { (cutOff, outageReported) = (false, false) }
            return .held(wasCutOff: cutOff, wasOut: cutOff || outageReported)
        }
        guard let lapsed = lease.until else { return .unchanged }  // never held: not serving yet
        let reaching = LeaseKeeper.peersReachingTheStore(
            lapsed: lapsed, lastFailedAttempt: lease.lastFailedAttempt, peers: peerRenewals,
            now: now, freshness: Self.leaseWordFreshness)
        if !reaching.isEmpty {
            guard !cutOff else { return .unchanged }
            cutOff = true
            return .cutOff(reaching: reaching)
        }
        // Peers renew every second: none did for this long since this lease ran out.
        guard !outageReported && now - lapsed > Self.leaseWordFreshness else { return .unchanged }
        outageReported = true
        return .outage
    }
}
