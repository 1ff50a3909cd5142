import MQTTCodec
import NIOCore
import NIOEmbedded
import StarlingCore
import StarlingTransport
import Testing

@Suite("MQTTServerHandler framing")
struct MQTTServerHandlerTests {
    /// The client's bytes: CONNECT, SUBSCRIBE, PUBLISH QoS 1 to itself, PINGREQ.
    static func clientBytes() -> ByteBuffer {
        var bytes = ByteBuffer()
        MQTTPacket.connect(MQTTConnect(version: .v3_1_1, clientID: "split", keepAlive: 30)).encode(into: &bytes, version: .v3_1_1)
        MQTTPacket.subscribe(
            MQTTSubscribe(packetID: 1, subscriptions: [MQTTSubscription(filter: try! MQTTTopicFilter("t/#"), qos: .atLeastOnce)])
        )
        .encode(into: &bytes, version: .v3_1_1)
        MQTTPacket.publish(MQTTPublish(topic: "t/1", payload: ByteBuffer(repeating: 0x61, count: 300), qos: .atLeastOnce, packetID: 2))
            .encode(into: &bytes, version: .v3_1_1)
        MQTTPacket.pingreq.encode(into: &bytes, version: .v3_1_1)
        return bytes
    }

    static func answers(readsOf size: Int) throws -> [MQTTPacket] {
        let broker = Broker()
        let channel = EmbeddedChannel(handler: MQTTServerHandler(broker: broker, maximumPacketSize: 1 << 20))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1883)).wait()
        var input = clientBytes()
        while input.readableBytes > 0 {
            try channel.writeInbound(input.readSlice(length: min(size, input.readableBytes))!)
            channel.pipeline.fireChannelReadComplete()
        }
        var out = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { out.writeBuffer(&chunk) }
        var decoder = MQTTPacketDecoder(role: .client, version: .v3_1_1)
        var packets: [MQTTPacket] = []
        while let packet = try decoder.next(from: &out) { packets.append(packet) }
        _ = try? channel.finish()
        return packets
    }

    @Test("packets split across reads of any size are framed as when whole", arguments: [1, 2, 3, 7, 64, 100_000])
    func splitReads(_ size: Int) throws {
        let packets = try Self.answers(readsOf: size)
        #expect(packets.map(\.type) == [.connack, .suback, .publish, .puback, .pingresp])
    }

    @Test("[MQTT-3.2.2-15] a declared size above the maximum closes the connection before the body arrives")
    func oversized() throws {
        let broker = Broker()
        let channel = EmbeddedChannel(handler: MQTTServerHandler(broker: broker, maximumPacketSize: 64))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1883)).wait()
        try channel.writeInbound(ByteBuffer(bytes: [0x10, 0xFF, 0x7F]))  // CONNECT of 16,383 bytes declared
        #expect(!channel.isActive)
    }
}

/// Delivers `rest` to the handlers behind it from inside the first write they make: NIO reads
/// a connection's remaining bytes in the middle of a write that fails, so the server handler
/// sees a read nested in its handling of a packet.
final class NestedReadInjector: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    var rest: ByteBuffer?
    init(rest: ByteBuffer) { self.rest = rest }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let rest = rest.take() { context.fireChannelRead(NIOAny(rest)) }
        context.write(data, promise: promise)
    }
}

@Suite("MQTTServerHandler: nested reads")
struct MQTTServerHandlerNestedReadTests {
    @Test("a read nested in the handling of a packet is decoded after what the outer read left")
    func nestedRead() throws {
        // A QoS 0 message of 70 kB to the client itself: its copy passes the handler's write
        // threshold, so the handler writes while it handles the PUBLISH. The first read ends one
        // byte into a PINGREQ; the rest (its second byte, another PINGREQ) arrives in that write.
        var input = ByteBuffer()
        MQTTPacket.connect(MQTTConnect(version: .v3_1_1, clientID: "nested", keepAlive: 30)).encode(into: &input, version: .v3_1_1)
        MQTTPacket.subscribe(
            MQTTSubscribe(packetID: 1, subscriptions: [MQTTSubscription(filter: try MQTTTopicFilter("t/#"), qos: .atMostOnce)])
        )
        .encode(into: &input, version: .v3_1_1)
        MQTTPacket.publish(MQTTPublish(topic: "t/1", payload: ByteBuffer(repeating: 0x61, count: 70_000), qos: .atMostOnce))
            .encode(into: &input, version: .v3_1_1)
        MQTTPacket.pingreq.encode(into: &input, version: .v3_1_1)
        MQTTPacket.pingreq.encode(into: &input, version: .v3_1_1)
        let first = input.readSlice(length: input.readableBytes - 3)!
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            NestedReadInjector(rest: input), MQTTServerHandler(broker: Broker(), maximumPacketSize: 1 << 20)
        ])
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1883)).wait()
        try channel.writeInbound(first)
        channel.pipeline.fireChannelReadComplete()
        var out = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { out.writeBuffer(&chunk) }
        var decoder = MQTTPacketDecoder(role: .client, version: .v3_1_1, maximumPacketSize: 1 << 20)
        var packets: [MQTTPacket] = []
        while let packet = try decoder.next(from: &out) { packets.append(packet) }
        #expect(packets.map(\.type) == [.connack, .suback, .publish, .pingresp, .pingresp])
        #expect(channel.isActive)
        _ = try? channel.finish()
    }
}
