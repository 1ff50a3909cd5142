import Logging
import MQTTCodec
import NIOCore
import NIOEmbedded
import StarlingCore
@testable import StarlingCluster
import Testing

/// The router's side of G1 for shared groups across nodes: a forward that waits for the peer's
/// commit always ends in `committed`, also when the message never goes (a publisher's
/// acknowledgement is held until then).
@Suite("Cluster router: forwards waiting for a peer's commit")
struct ClusterRouterForwardTests {
    static let message = Message(topic: "j/1", payload: ByteBuffer(string: "a"), qos: .atLeastOnce, retain: false, publisher: "p")
    static let group = ShareGroupKey(name: "g", filter: "j/#")

    /// A router with an outbound link up to n2 on an embedded channel (with `up` false, the
    /// link exists but the router has not been told yet: `bringUp` does).
    static func routerWithLink(up: Bool = true, readsBatches: Bool = false) throws -> (ClusterRouter, EmbeddedChannel, bringUp: () -> Void)
    {
        let channel = EmbeddedChannel()
        let logger = Logger(label: "test")
        let router = ClusterRouter(loop: channel.embeddedEventLoop, logger: logger)
        let link = ClusterLinkHandler(
            role: .dialer(peer: "n2"), nodeID: "n1", secret: "test-cluster-secret-0123456789", links: PeerLinks(),
            router: router, logger: logger)
        link.readsBatches = readsBatches  // as the peer's CONNACK says
        try channel.pipeline.syncOperations.addHandler(link)
        if up { router.outboundUp("n2", link: link) }
        return (router, channel, { router.outboundUp("n2", link: link) })
    }

    /// The PUBLISH packets on `topic` (nil: any) the link wrote, in order.
    static func written(_ channel: EmbeddedChannel, topic: String?) throws -> [MQTTPublish] {
        channel.embeddedEventLoop.run()  // the link's flush
        var publishes: [MQTTPublish] = []
        while var written = try channel.readOutbound(as: ByteBuffer.self) {
            while let frame = try MQTTFrame.read(from: &written, maximumPacketSize: 1 << 20) {
                if case .publish(let p) = try MQTTPacket.decode(frame, version: .v5, role: .server), topic.map({ p.topic == $0 }) ?? true {
                    publishes.append(p)
                }
            }
        }
        return publishes
    }

    @Test(
        "issue 23: plain messages for a peer that reads batches go in one PUBLISH per turn of the loop, in order and before what is sent after them; they arrive as they were sent"
    )
    func plainMessagesTravelInBatches() throws {
        let (router, channel, _) = try Self.routerWithLink(readsBatches: true)
        _ = try Self.written(channel, topic: nil)  // the route set and directory a link starts with
        let now = NIODeadline.now()
        let first = Message(
            topic: "t/1", payload: ByteBuffer(string: "one"), qos: .atMostOnce, retain: true,
            properties: [.contentType("text/plain"), .userProperty("k", "v")], expiresAt: now + .seconds(60), publisher: "p1")
        let second = Message(topic: "t/é", payload: ByteBuffer(), qos: .exactlyOnce, retain: false, publisher: "")
        router.forward(first, to: "n2", plain: true, groups: [], deliveries: [], committed: nil)
        router.forward(second, to: "n2", plain: true, groups: [], deliveries: [], committed: nil)
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: {})
        let sent = try Self.written(channel, topic: nil)
        #expect(sent.map(\.topic) == [PeerMessages.batch, "j/1"])
        let arrived = try PeerMessages.messages(inBatch: sent[0].payload, now: now)
        #expect(arrived.count == 2)
        for (a, b) in zip(arrived, [first, second]) {
            #expect(a.topic == b.topic && a.payload == b.payload && a.qos == b.qos && a.retain == b.retain)
            #expect(a.properties == b.properties && a.publisher == b.publisher)
        }
        #expect(arrived[0].expiresAt == now + .seconds(60) && arrived[1].expiresAt == nil)
        #expect(router.forwarded == 3)
        var cut = sent[0].payload
        cut.moveWriterIndex(to: cut.writerIndex - 1)
        #expect(throws: PeerMessages.MalformedBatch.self) { try PeerMessages.messages(inBatch: cut, now: now) }
    }

    @Test("a peer that does not read batches (an earlier version: its CONNACK does not say so) gets one PUBLISH per message")
    func noBatchesForAnEarlierPeer() throws {
        let (router, channel, _) = try Self.routerWithLink()
        _ = try Self.written(channel, topic: nil)
        router.forward(Self.message, to: "n2", plain: true, groups: [], deliveries: [], committed: nil)
        router.forward(Self.message, to: "n2", plain: true, groups: [], deliveries: [], committed: nil)
        #expect(try Self.written(channel, topic: nil).map(\.topic) == ["j/1", "j/1"])
    }

    @Test(
        "G7: a message for a peer whose link from here is not up yet is held and sent, in order, when it comes up; never acknowledged-and-dropped"
    )
    func heldUntilTheLinkIsUp() throws {
        let (router, channel, bringUp) = try Self.routerWithLink(up: false)
        var released = false
        router.forward(Self.message, to: "n2", plain: true, groups: [], deliveries: [], committed: nil)
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        #expect(router.forwardDrops == 0 && !released)
        #expect(try Self.written(channel, topic: "j/1").isEmpty)
        bringUp()
        let sent = try Self.written(channel, topic: "j/1")
        #expect(sent.count == 2 && sent[0].qos == .atMostOnce && sent[1].qos == .atLeastOnce && !released)
        router.acknowledged(try #require(sent[1].packetID), by: "n2")
        #expect(released && router.forwardDrops == 0)
    }

    @Test("a link that does not come up within the wait: the held messages are dropped, counted, and acknowledgements released")
    func heldThenDropped() throws {
        let (router, channel, _) = try Self.routerWithLink(up: false)
        router.linkWait = .milliseconds(10)
        var released = false
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        #expect(released && router.forwardDrops == 1)
    }

    @Test("a link too slow to wait for drops the message and releases the acknowledgement at once")
    func stalledLinkReleases() throws {
        let (router, channel, _) = try Self.routerWithLink()
        router.stallLimit = .nanoseconds(-1)  // any time full counts as too long
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        var released = false
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        #expect(released)
    }

    @Test("a link that takes it: released when the peer acknowledges, not before")
    func acknowledgedRelease() throws {
        let (router, channel, _) = try Self.routerWithLink()
        var released = false
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        let sent = try #require(try Self.written(channel, topic: "j/1").first)
        #expect(sent.qos == .atLeastOnce && !released)
        router.acknowledged(try #require(sent.packetID), by: "n2")
        #expect(released)
    }

    @Test(
        "a peer that let a claim time out is not waited for by the broadcasts after it (the CONNACK would wait 2 s more), until it answers again"
    )
    func silentPeerIsNotWaitedFor() throws {
        let (router, channel, _) = try Self.routerWithLink()
        router.claimAckTimeout = .milliseconds(250)
        var claimed = false
        router.broadcast([{ ClusterLinkHandler.claimed("dev", epoch: 7, packetID: $0) }], what: "a claim", timeout: router.claimAckTimeout)
        {
            claimed = true
        }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(250))
        #expect(claimed && router.silent == ["n2"])
        // The session's directory entry after the claim: sent to the silent peer, not waited for.
        var announced = false
        router.sessionsChanged([SessionDirectoryEntry(clientID: "dev", owner: "n1", subscriptions: [], epoch: 7)]) { announced = true }
        #expect(announced)
        let sent = try Self.written(channel, topic: PeerDirectory.changed)
        #expect(sent.count == 1)
        // It answers: waited for again.
        router.acknowledged(try #require(sent.first?.packetID), by: "n2")
        var again = false
        router.sessionsChanged([SessionDirectoryEntry(clientID: "dev", owner: "n1", subscriptions: [], epoch: 8)]) { again = true }
        #expect(!again && router.silent.isEmpty)
    }

    @Test(
        "issue 20: a peer that has answered nothing for a while (frozen, cut off) is not waited for by a claim; one heard from lately is"
    )
    func quietPeerIsNotWaitedFor() throws {
        let (router, channel, _) = try Self.routerWithLink()
        let claim: [(UInt16) -> MQTTPacket] = [{ ClusterLinkHandler.claimed("dev", epoch: 7, packetID: $0) }]
        var claimed = false
        router.broadcast(claim, what: "a claim", timeout: router.claimAckTimeout) { claimed = true }
        #expect(!claimed)
        let first = try #require(try Self.written(channel, topic: PeerMessages.sessionClaimed).first?.packetID)
        router.acknowledged(first, by: "n2")
        #expect(claimed)
        // Two of the link's pings unanswered: the claim is the database's, decided already.
        channel.embeddedEventLoop.advanceTime(by: ClusterLinkHandler.quietAfter + .milliseconds(1))
        var quietClaim = false
        router.broadcast(claim, what: "a claim", timeout: router.claimAckTimeout) { quietClaim = true }
        #expect(quietClaim && !router.silent.contains("n2"))
        #expect(try Self.written(channel, topic: PeerMessages.sessionClaimed).count == 1)  // still told
        // It speaks again: waited for again.
        channel.pipeline.fireChannelReadComplete()
        var heardClaim = false
        router.broadcast(claim, what: "a claim", timeout: router.claimAckTimeout) { heardClaim = true }
        #expect(!heardClaim)
    }

    @Test(
        "G2, claims crossing: a peer's claim of a session arrives while this node's own claim of it waits for the peers; the broker is told the peer's epoch (it serves the later one: ClusterBusTests), the peer's answer waits until the broker has let the session go and carries its ended deliveries, and this node's claim ends when the peer answers it"
    )
    func crossingClaims() throws {
        let (router, channel, _) = try Self.routerWithLink()
        let inbound = RecordingInbound()
        inbound.holdsClaims = true
        inbound.ended = [3]
        router.broker = inbound
        var claimed = false
        router.broadcast([{ ClusterLinkHandler.claimed("dev", epoch: 7, packetID: $0) }], what: "a claim", timeout: router.claimAckTimeout)
        {
            claimed = true
        }
        let ours = try #require(try Self.written(channel, topic: PeerMessages.sessionClaimed).first)
        #expect(PeerMessages.claim(from: ours.payload)?.epoch == 7)

        guard case .publish(let theirs) = ClusterLinkHandler.claimed("dev", epoch: 8, packetID: 1) else {
            Issue.record("not a PUBLISH")
            return
        }
        var answer: MQTTProperties?
        router.received(theirs, from: "n2", acknowledge: {}, answer: { answer = $0 })
        #expect(inbound.recorded == ["claimedElsewhere dev by n2 at 8"])
        #expect(answer == nil)
        inbound.heldAcknowledgements.removeFirst()()
        #expect(answer.map(PeerMessages.ended(from:)) == [3])

        #expect(!claimed)
        router.acknowledged(try #require(ours.packetID), by: "n2")
        #expect(claimed)
    }

    @Test("a claim's answer carries the session's ended deliveries; other answers carry none")
    func endedInAnswers() {
        #expect(PeerMessages.ended([]).isEmpty)
        #expect(PeerMessages.ended(from: PeerMessages.ended([3, 1_099_511_627_776, 7])) == [3, 1_099_511_627_776, 7])
        #expect(PeerMessages.ended(from: [.userProperty("other", "1")]).isEmpty)
    }
}
