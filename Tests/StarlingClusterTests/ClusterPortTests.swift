import Logging
import MQTTCodec
import NIOCore
import NIOPosix
@testable import StarlingCluster
import StarlingCore
import StarlingTesting
import Testing

/// The cluster's decisions through its ports, with in-memory fakes of the broker
/// (`ClusterInbound`) and of the store's ownership side (`SessionOwnershipStore`): no
/// sockets, no database (docs/architecture.md, "Cluster").
@Suite("Cluster port: the sweeper, the partition verdict and claims, against fakes")
struct ClusterPortTests {
    static let logger = Logger(label: "test")

    static func withLoop(_ body: (any EventLoop) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await body(group.next())
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    static func will(_ topic: String) -> MQTTWill { MQTTWill(topic: topic, payload: ByteBuffer(string: "gone")) }

    @Test(
        "[MQTT-4.8.2-5] the sweeper lets dead nodes' sessions go, gives their shared QoS 1 messages to other members, then publishes due wills and ends expired sessions — all through the broker's port"
    )
    func sweeperHandsOver() async throws {
        try await Self.withLoop { loop in
            var setup = FakeOwnership.Setup()
            setup.released = [StoredSession(clientID: "dead-1", version: .v5, expiryInterval: 60, connected: true)]
            setup.shared = [
                (
                    StoredMessage(
                        id: 1, topic: "s/1", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, retain: false,
                        properties: [], expiresAt: nil, publisher: "p"), ShareGroupKey(name: "g", filter: "s/#")
                )
            ]
            setup.dueWills = [("dead-1", Self.will("w/dead-1"))]
            setup.expired = ["gone"]
            let store = FakeOwnership(setup)
            let inbound = RecordingInbound()
            let sweeper = DeadNodeSweeper(store: store, broker: inbound, loop: loop, firstToken: 100, logger: Self.logger)
            await sweeper.sweep()
            try await loop.submit {}.get()
            #expect(store.recorded == ["release", "takeShared [\"dead-1\"]"])
            #expect(inbound.recorded == ["redispatch [\"s/1@g\"]", "wills [\"dead-1\"]", "expired [\"gone\"]"])
            // Nothing left: a second sweep tells the broker nothing.
            await sweeper.sweep()
            try await loop.submit {}.get()
            #expect(inbound.recorded.count == 3)
        }
    }

    @Test(
        "the sweeper judges by its clock: a dead node's sessions go once its lease has run out, their wills once their delay has passed, the sessions once they expire; each once"
    )
    func sweeperOnAManualClock() async throws {
        try await Self.withLoop { loop in
            let clock = ManualClock()
            let start = clock.wallClockMilliseconds()
            var setup = FakeOwnership.Setup()
            setup.leaseEnds = [(start + 3_000, StoredSession(clientID: "dead-1", version: .v5, expiryInterval: 60, connected: true))]
            setup.willsDue = [(start + 8_000, "dead-1", Self.will("w/dead-1"))]
            setup.expiries = [(start + 63_000, "dead-1")]
            let store = FakeOwnership(setup)
            let inbound = RecordingInbound()
            let sweeper = DeadNodeSweeper(store: store, broker: inbound, loop: loop, firstToken: 100, logger: Self.logger, clock: clock)
            func sweep(after amount: TimeAmount) async throws {
                clock.advance(by: amount)
                await sweeper.sweep()
                try await loop.submit {}.get()
            }
            try await sweep(after: .seconds(2))
            #expect(store.recorded == ["release"] && inbound.recorded.isEmpty)
            try await sweep(after: .seconds(1))  // the dead node's lease has run out
            #expect(store.recorded == ["release", "release", "takeShared [\"dead-1\"]"] && inbound.recorded.isEmpty)
            try await sweep(after: .seconds(4))
            #expect(inbound.recorded.isEmpty)
            try await sweep(after: .seconds(1))  // the will's delay has passed
            #expect(inbound.recorded == ["wills [\"dead-1\"]", "expired []"])
            try await sweep(after: .seconds(54))
            #expect(inbound.recorded.count == 2)
            try await sweep(after: .seconds(1))  // the session's expiry has passed
            #expect(inbound.recorded.suffix(2) == ["wills []", "expired [\"dead-1\"]"])
        }
    }

    @Test("the sweeper holds no broker alive: the broker gone, a sweep changes nothing")
    func sweeperHoldsTheBrokerWeakly() async throws {
        try await Self.withLoop { loop in
            var setup = FakeOwnership.Setup()
            setup.released = [StoredSession(clientID: "dead-1", version: .v5, expiryInterval: 60, connected: false)]
            let store = FakeOwnership(setup)
            var inbound: RecordingInbound? = RecordingInbound()
            let sweeper = DeadNodeSweeper(store: store, broker: inbound!, loop: loop, firstToken: 100, logger: Self.logger)
            inbound = nil
            await sweeper.sweep()
            #expect(store.recorded.isEmpty && sweeper.broker == nil)
        }
    }

    /// A lease view whose lease ran out `lapsedAgo` before `now`, whose latest renewal failed
    /// `failedAgo` before it.
    static func lapsed(_ now: NIODeadline, lapsedAgo: TimeAmount, failedAgo: TimeAmount) -> LeaseView {
        LeaseView(held: false, until: now - lapsedAgo, lastRenewal: now - lapsedAgo - .seconds(3), lastFailedAttempt: now - failedAgo)
    }

    @Test(
        "the partition verdict: cut off only when a peer renewed after this lease ran out and before this node's renewal failed; the clients go once, and back on the lease the wills no survivor took are published here"
    )
    func partitionVerdict() async throws {
        try await Self.withLoop { loop in
            var setup = FakeOwnership.Setup()
            setup.connectionWills = [41: ("dev", Self.will("w/dev"))]
            let store = FakeOwnership(setup)
            let inbound = RecordingInbound()
            let router = ClusterRouter(loop: loop, logger: Self.logger)
            router.broker = inbound
            router.ownership = store
            try await loop.submit {
                let now = NIODeadline.now()
                // Nobody renewed since this lease ran out: an outage for everyone, clients stay.
                router.partition.peerRenewals = ["n2": (now - .seconds(5), now)]
                router.leaseChecked(Self.lapsed(now, lapsedAgo: .seconds(2), failedAgo: .milliseconds(100)))
            }.get()
            try await loop.submit {}.get()
            #expect(inbound.recorded.isEmpty)
            try await loop.submit {
                let now = NIODeadline.now()
                // n2 renewed after the lapse and before this node's failed attempt: cut off.
                router.partition.peerRenewals = ["n2": (now - .seconds(1), now)]
                router.leaseChecked(Self.lapsed(now, lapsedAgo: .seconds(2), failedAgo: .milliseconds(100)))
                router.leaseChecked(Self.lapsed(now, lapsedAgo: .seconds(2), failedAgo: .milliseconds(50)))
            }.get()
            try await loop.submit {}.get()
            #expect(inbound.recorded == ["cutOff"])
            // Back on the lease: serving again, and the will the survivors did not take is published here.
            inbound.willTokens.withLock { $0 = [41, 42] }
            try await loop.submit {
                let now = NIODeadline.now()
                router.leaseChecked(LeaseView(held: true, until: now + .seconds(5), lastRenewal: now, lastFailedAttempt: nil))
            }.get()
            var events = inbound.events.makeAsyncIterator()
            while let event = await events.next(), !event.hasPrefix("wills") {}
            #expect(inbound.recorded == ["cutOff", "servingAgain", "wills [\"dev\"]"])
            #expect(store.recorded == ["takeConnectionWills [41, 42]"])
        }
    }

    @Test(
        "G1/G2: a claim names this node the owner first, then asks the peers, then waits for the previous holder's replay (bounded), then reads"
    )
    func claimOrder() async throws {
        try await Self.withLoop { loop in
            var setup = FakeOwnership.Setup()
            setup.previousOwner = "n2"
            setup.replayingAnswers = [true, true, false]
            let store = FakeOwnership(setup)
            let router = ClusterRouter(loop: loop, logger: Self.logger)
            router.ownership = store
            let claim = try await Self.claim("dev", router, loop)
            #expect(claim?.epoch == 7)
            #expect(store.recorded == ["claimOwnership dev", "isReplaying n2", "isReplaying n2", "isReplaying n2", "claimSession dev"])
        }
    }

    @Test(
        "G7: a previous holder that stays in its replay is waited for at most replayWait; a session without subscriptions, or without a previous holder, waits for none"
    )
    func claimReplayWaitIsBounded() async throws {
        try await Self.withLoop { loop in
            var setup = FakeOwnership.Setup()
            setup.previousOwner = "n2"  // replaying for ever
            let store = FakeOwnership(setup)
            let router = ClusterRouter(loop: loop, logger: Self.logger)
            router.ownership = store
            router.replayWait = .milliseconds(300)
            let claimed = try await Self.claim("dev", router, loop)
            #expect(claimed != nil)
            #expect(store.recorded.last == "claimSession dev" && store.recorded.count >= 3)

            // A session without subscriptions (a device that only publishes): nothing to wait for.
            let publisher = FakeOwnership(setup)
            router.ownership = publisher
            let device = try await Self.claim("device", router, loop, subscribed: false)
            #expect(device != nil)
            #expect(publisher.recorded == ["claimOwnership device", "claimSession device"])

            let fresh = FakeOwnership()
            router.ownership = fresh
            let other = try await Self.claim("other", router, loop)
            #expect(other != nil)
            #expect(fresh.recorded == ["claimOwnership other", "claimSession other"])
        }
    }

    @Test(
        "Claims that arrive while others run go together in the next batch (one ownership statement, one read); a client claimed twice goes in two batches, one after the other"
    )
    func claimsInBatches() async throws {
        try await Self.withLoop { loop in
            let store = FakeOwnership()
            let router = ClusterRouter(loop: loop, logger: Self.logger)
            router.ownership = store
            let order = ["a", "b", "c", "a", "d", "c"]
            // All in one turn of the loop: the first two start their batches at once, the others wait.
            let answers = AsyncStream<(Int, SessionClaim?)>.makeStream()
            loop.execute {
                for (index, clientID) in order.enumerated() {
                    router.claimSession(clientID, subscribed: false) { answers.continuation.yield((index, $0)) }
                }
            }
            var claims: [Int: SessionClaim?] = [:]
            for await (index, claim) in answers.stream {
                claims[index] = claim
                if claims.count == order.count { break }
            }
            #expect(claims.values.allSatisfy { $0?.epoch == 7 })
            // Each record names its batch's clients: "claimOwnership c a d".
            let calls = store.recorded.map { $0.split(separator: " ").map(String.init) }
            let batches = calls.filter { $0.first == "claimOwnership" }.map { Array($0.dropFirst()) }
            #expect(batches.flatMap { $0 }.sorted() == order.sorted())
            #expect(batches.count < order.count && batches.allSatisfy { Set($0).count == $0.count })
            // A client's second claim starts after the batch with its first has read.
            for clientID in ["a", "c"] {
                let owned = calls.indices.filter { calls[$0].first == "claimOwnership" && calls[$0].contains(clientID) }
                let read = calls.indices.filter { calls[$0].first == "claimSession" && calls[$0].contains(clientID) }
                #expect(owned.count == 2 && read.count == 2 && read[0] < owned[1])
            }
        }
    }

    @Test(
        "issue 20: a device's claim does not wait behind subscribers' claims whose reads take long (their backlogs): sessions without subscriptions have a lane of their own",
        .timeLimit(.minutes(1))
    )
    func devicesHaveTheirOwnLane() async throws {
        try await Self.withLoop { loop in
            let store = FakeOwnership()
            store.slowReads.withLock { $0.clients = ["sub1", "sub2"] }
            let router = ClusterRouter(loop: loop, logger: Self.logger)
            router.ownership = store
            let answers = AsyncStream<String>.makeStream()
            loop.execute {
                // Two subscribers' claims fill their lane's two batches; then a device's.
                for (clientID, subscribed) in [("sub1", true), ("sub2", true), ("dev", false)] {
                    router.claimSession(clientID, subscribed: subscribed) { _ in answers.continuation.yield(clientID) }
                }
            }
            var iterator = answers.stream.makeAsyncIterator()
            #expect(await iterator.next() == "dev")  // served while both subscribers' reads wait
            store.releaseReads()
            let first = await iterator.next()
            let second = await iterator.next()
            #expect(Set([first, second]) == ["sub1", "sub2"])
        }
    }

    static func claim(_ clientID: String, _ router: ClusterRouter, _ loop: any EventLoop, subscribed: Bool = true) async throws
        -> SessionClaim?
    {
        try await withCheckedThrowingContinuation { continuation in
            loop.execute { router.claimSession(clientID, subscribed: subscribed) { continuation.resume(returning: $0) } }
        }
    }
}
