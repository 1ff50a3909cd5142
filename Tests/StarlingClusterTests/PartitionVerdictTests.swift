import NIOCore
@testable import StarlingCluster
import Testing

/// The partition verdict as a decision on a lease and the peers' words, with a fixed clock:
/// no loop, no links (docs/architecture.md, "Cluster").
@Suite struct PartitionVerdictTests {
    let now = NIODeadline.uptimeNanoseconds(3_600_000_000_000)

    func lapsed(ago: TimeAmount, failedAgo: TimeAmount) -> LeaseView {
        LeaseView(held: false, until: now - ago, lastRenewal: now - ago - .seconds(3), lastFailedAttempt: now - failedAgo)
    }

    @Test("a lease never held decides nothing")
    func neverHeld() {
        var verdict = PartitionVerdict()
        verdict.heard("n2", renewedMillisecondsAgo: 100, now: now)
        #expect(verdict.check(LeaseView(held: false, until: nil), now: now) == .unchanged)
    }

    @Test("no peer renewed since the lease ran out: an outage, reported once, and the clients stay")
    func outageReportedOnce() {
        var verdict = PartitionVerdict()
        verdict.heard("n2", renewedMillisecondsAgo: 5_000, now: now)
        let lease = lapsed(ago: .seconds(4), failedAgo: .milliseconds(100))
        #expect(verdict.check(lease, now: now) == .outage)
        #expect(verdict.check(lease, now: now) == .unchanged)
        #expect(!verdict.cutOff)
        #expect(verdict.check(LeaseView(held: true, until: now + .seconds(5)), now: now) == .held(wasCutOff: false, wasOut: true))
    }

    @Test("too early to call an outage: the lease ran out less than the freshness of a word ago")
    func tooEarly() {
        var verdict = PartitionVerdict()
        #expect(verdict.check(lapsed(ago: .seconds(2), failedAgo: .milliseconds(100)), now: now) == .unchanged)
    }

    @Test("a peer renewed after the lapse and before this node's failed attempt: cut off, once, until the lease holds")
    func cutOffOnce() {
        var verdict = PartitionVerdict()
        verdict.heard("n2", renewedMillisecondsAgo: 1_000, now: now)
        verdict.heard("n3", renewedMillisecondsAgo: -1, now: now)  // never renewed: not a word
        let lease = lapsed(ago: .seconds(2), failedAgo: .milliseconds(100))
        #expect(verdict.check(lease, now: now) == .cutOff(reaching: ["n2"]))
        #expect(verdict.cutOff)
        #expect(verdict.check(lease, now: now) == .unchanged)
        let held = LeaseView(held: true, until: now + .seconds(5))
        #expect(verdict.check(held, now: now) == .held(wasCutOff: true, wasOut: true))
        #expect(verdict.check(held, now: now) == .held(wasCutOff: false, wasOut: false))
    }
}
