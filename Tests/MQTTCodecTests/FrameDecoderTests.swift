import MQTTCodec
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite("Frame decoder")
struct FrameDecoderTests {
    /// A stream of packets of several sizes, including one whose remaining length needs
    /// three bytes.
    static func stream() -> (ByteBuffer, [MQTTPacket]) {
        let packets: [MQTTPacket] = [
            .connect(MQTTConnect(version: .v5, clientID: "verifier", keepAlive: 30, properties: [.sessionExpiryInterval(60)])),
            .publish(MQTTPublish(topic: "a/b", payload: ByteBuffer(string: "hello"), qos: .atLeastOnce, packetID: 1)),
            .publish(MQTTPublish(topic: "big", payload: ByteBuffer(repeating: 0x42, count: 20_000), qos: .atMostOnce)),
            .pingreq,
            .subscribe(
                MQTTSubscribe(packetID: 2, subscriptions: [MQTTSubscription(filter: try! MQTTTopicFilter("a/#"), qos: .exactlyOnce)])),
            .pubrel(MQTTAck(packetID: 1)),
            .disconnect(MQTTDisconnect(reasonCode: .disconnectWithWillMessage))
        ]
        var buffer = ByteBuffer()
        for packet in packets { packet.encode(into: &buffer, version: .v5) }
        return (buffer, packets)
    }

    @Test("every split of the input yields the same packets (ByteToMessageDecoderVerifier)")
    func verifierPackets() throws {
        let (buffer, packets) = Self.stream()
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(buffer, packets)],
            decoderFactory: { MQTTPacketDecoder(role: .server) }
        )
    }

    @Test("the reader refuses an oversized packet from its header, before the body arrives, and yields no frame")
    func oversizedFrame() throws {
        var reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .server, maximumPacketSize: 64))
        var bytes = ByteBuffer(bytes: [0x30, 0xC8, 0x01])  // PUBLISH, remaining length 200
        let decodesNow = reader.receive(&bytes)
        #expect(decodesNow)
        #expect(throws: MQTTCodecError.self) { try reader.nextFrame() }
        reader.finish(allocator: ByteBufferAllocator())
    }
}

@Suite("Packet reader: a connection's bytes cut into packets")
struct PacketReaderTests {
    /// Decodes `stream` read in chunks of `size`, where handling a packet may deliver the next
    /// chunk at once (a nested read, as NIO does when a write fails while the handler answers).
    static func decode(_ stream: ByteBuffer, chunk size: Int, nestedAfter nesting: Set<Int>) throws -> [MQTTPacket] {
        var input = stream
        var reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .server, version: .v5))
        var packets: [MQTTPacket] = []
        func read(_ bytes: ByteBuffer) throws {
            var bytes = bytes
            guard reader.receive(&bytes) else { return }
            defer { reader.finish(allocator: ByteBufferAllocator()) }
            while let packet = try reader.next() {
                packets.append(packet)
                if nesting.contains(packets.count), let next = input.readSlice(length: min(size, input.readableBytes)),
                    next.readableBytes > 0
                {
                    try read(next)
                }
            }
        }
        while let next = input.readSlice(length: min(size, input.readableBytes)), next.readableBytes > 0 { try read(next) }
        #expect(reader.pendingBytes == 0)
        return packets
    }

    @Test(
        "frames cut from reads of any size are the packets' own frames (the benchmark's clients parse them)",
        arguments: [1, 7, 1000, 30_000])
    func framesInChunks(_ size: Int) throws {
        let (stream, packets) = FrameDecoderTests.stream()
        let expected = packets.map { packet -> MQTTFrame in
            var bytes = packet.encoded(version: .v5)
            return try! MQTTFrame.read(from: &bytes, maximumPacketSize: 1 << 20)!
        }
        var input = stream
        var reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .server))
        var frames: [MQTTFrame] = []
        while var next = input.readSlice(length: min(size, input.readableBytes)), next.readableBytes > 0 {
            let decodesNow = reader.receive(&next)
            #expect(decodesNow)
            while let frame = try reader.nextFrame() { frames.append(frame) }
            reader.finish(allocator: ByteBufferAllocator())
        }
        #expect(frames == expected && reader.pendingBytes == 0)
    }

    @Test("bytes of a read nested in the handling of a packet come after the packet it interrupted", arguments: [1, 5, 33, 1000])
    func nestedReads(_ size: Int) throws {
        let (stream, packets) = FrameDecoderTests.stream()
        #expect(try Self.decode(stream, chunk: size, nestedAfter: [1, 2, 4]) == packets)
        #expect(try Self.decode(stream, chunk: size, nestedAfter: Set(1...packets.count)) == packets)
    }
}
