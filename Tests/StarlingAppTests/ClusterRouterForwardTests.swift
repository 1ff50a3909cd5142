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

    /// A router with an outbound link up to n2 on an embedded channel.
    static func routerWithLink() throws -> (ClusterRouter, EmbeddedChannel) {
        let channel = EmbeddedChannel()
        let logger = Logger(label: "test")
        let router = ClusterRouter(loop: channel.embeddedEventLoop, logger: logger)
        let link = ClusterLinkHandler(role: .dialer(peer: "n2"), nodeID: "n1", secret: "test-cluster-secret-0123456789", links: PeerLinks(),
                                      router: router, logger: logger)
        try channel.pipeline.syncOperations.addHandler(link)
        router.outboundUp("n2", link: link)
        return (router, channel)
    }

    @Test("a link too slow to wait for drops the message and releases the acknowledgement at once")
    func stalledLinkReleases() throws {
        let (router, channel) = try Self.routerWithLink()
        router.stallLimit = .nanoseconds(-1)  // any time full counts as too long
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        var released = false
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        #expect(released)
    }

    @Test("a link that takes it: released when the peer acknowledges, not before")
    func acknowledgedRelease() throws {
        let (router, channel) = try Self.routerWithLink()
        var released = false
        router.forward(Self.message, to: "n2", plain: false, groups: [Self.group], deliveries: [], committed: { released = true })
        channel.embeddedEventLoop.run()  // the link's flush
        // What the link wrote (its routes and directory first), up to the message.
        var publish: MQTTPublish?
        while publish == nil, var written = try channel.readOutbound(as: ByteBuffer.self) {
            while let frame = try MQTTFrame.read(from: &written, maximumPacketSize: 1 << 20) {
                if case .publish(let p) = try MQTTPacket.decode(frame, version: .v5, role: .server), p.topic == "j/1" { publish = p }
            }
        }
        let sent = try #require(publish)
        #expect(sent.qos == .atLeastOnce && !released)
        router.acknowledged(try #require(sent.packetID), by: "n2")
        #expect(released)
    }
}
