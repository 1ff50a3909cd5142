import MQTTCodec
import NIOCore
import NIOPosix

/// Per-loop state of the sink server.
final class SinkStats {
    var counters = Counters()
    let emptyBuffer = ByteBufferAllocator().buffer(capacity: 0)
    /// `--forward`: every PUBLISH goes to each connection that subscribed, on this loop.
    let forward: Bool
    var subscribers: [SinkHandler] = []
    /// Subscribers with queued output, flushed once per read of a publisher.
    var dirty: [SinkHandler] = []

    init(forward: Bool) { self.forward = forward }

    func flushDirty() {
        for subscriber in dirty { subscriber.flushOut() }
        dirty.removeAll(keepingCapacity: true)
    }
}

/// A trivial MQTT server: accepts every CONNECT, grants every SUBSCRIBE, acknowledges every
/// PUBLISH (QoS 1 and 2), answers PINGREQ, and discards messages. It forwards nothing, so a
/// run against it shows the ceiling of the generator itself.
final class SinkHandler: FrameReading {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let stats: SinkStats
    private var version: MQTTProtocolVersion?
    var reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .server, maximumPacketSize: Client.maximumPacketSize))
    private var out: ByteBuffer
    private var closing = false
    private var context: ChannelHandlerContext?
    private var isSubscriber = false
    private var isDirty = false

    init(stats: SinkStats) {
        self.stats = stats
        self.out = stats.emptyBuffer
    }

    func channelActive(context: ChannelHandlerContext) {
        stats.counters.open += 1
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stats.counters.open -= 1
        if isSubscriber, let index = stats.subscribers.firstIndex(where: { $0 === self }) {
            stats.subscribers.remove(at: index)
            isSubscriber = false
        }
        context.fireChannelInactive()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { readFailed(context: context) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { readFrames(context: context, data: data) }

    func handleFrame(_ frame: MQTTFrame, context: ChannelHandlerContext) throws -> Bool {
        try handle(frame, context: context)
        return !closing
    }

    func readFailed(context: ChannelHandlerContext) {
        closing = true
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOut()
        if !stats.dirty.isEmpty { stats.flushDirty() }
        context.fireChannelReadComplete()
    }

    func flushOut() {
        isDirty = false
        guard out.readableBytes > 0, let context else { return }
        context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
        out = stats.emptyBuffer
    }

    /// Queues a QoS 0 copy of a PUBLISH (topic and payload slices of the publisher's input).
    private func forward(topic: ByteBuffer, payload: ByteBuffer) {
        guard let context, context.channel.isWritable else {
            stats.counters.discarded += 1
            return
        }
        let v5 = version?.hasProperties ?? false
        out.writeInteger(UInt8(0x30))
        out.writeMQTTVariableByteInteger(topic.readableBytes + (v5 ? 1 : 0) + payload.readableBytes)
        out.writeImmutableBuffer(topic)
        if v5 { out.writeInteger(UInt8(0)) }
        out.writeImmutableBuffer(payload)
        stats.counters.forwarded += 1
        if !isDirty {
            isDirty = true
            stats.dirty.append(self)
        }
    }

    private func handle(_ frame: MQTTFrame, context: ChannelHandlerContext) throws {
        let type = frame.typeAndFlags >> 4
        guard let version else {
            // The first packet must be CONNECT.
            guard case .connect(let connect) = try MQTTPacket.decode(frame, version: .v5, role: .server) else {
                throw MQTTCodecError.protocolError("the first packet is not CONNECT", spec: "MQTT-3.1.0-1")
            }
            self.version = connect.version
            stats.counters.connected += 1
            MQTTPacket.connack(MQTTConnAck()).encode(into: &out, version: connect.version)
            return
        }
        let body = frame.body
        switch type {
        case 3:  // PUBLISH
            stats.counters.received += 1
            let qos = (frame.typeAndFlags >> 1) & 0x03
            guard let topicLength = body.getInteger(at: body.readerIndex, as: UInt16.self) else {
                throw MQTTCodecError.malformed("PUBLISH without a topic")
            }
            var index = body.readerIndex + 2 + Int(topicLength)
            if qos > 0 {
                guard let id = body.getInteger(at: index, as: UInt16.self) else {
                    throw MQTTCodecError.malformed("PUBLISH without a packet identifier")
                }
                appendAck(qos == 1 ? 0x40 : 0x50, id)
                index += 2
            }
            if stats.forward && !stats.subscribers.isEmpty {
                if version.hasProperties {
                    var properties = body.getSlice(at: index, length: body.writerIndex - index) ?? ByteBuffer()
                    let length = try properties.readMQTTVariableByteInteger()
                    index = properties.readerIndex + length
                }
                guard index <= body.writerIndex,
                    let topic = body.getSlice(at: body.readerIndex, length: 2 + Int(topicLength)),
                    let payload = body.getSlice(at: index, length: body.writerIndex - index)
                else {
                    throw MQTTCodecError.malformed("PUBLISH is shorter than its header")
                }
                for subscriber in stats.subscribers { subscriber.forward(topic: topic, payload: payload) }
            }
        case 6:  // PUBREL
            guard let id = body.getInteger(at: body.readerIndex, as: UInt16.self) else {
                throw MQTTCodecError.malformed("PUBREL without a packet identifier")
            }
            appendAck(0x70, id)
        case 4, 5, 7:  // acknowledgements of nothing we sent: ignore
            break
        case 12:  // PINGREQ
            out.writeInteger(UInt16(0xD000))
        case 14:  // DISCONNECT
            closing = true
            context.close(promise: nil)
        default:
            switch try MQTTPacket.decode(frame, version: version, role: .server) {
            case .subscribe(let subscribe):
                let codes = subscribe.subscriptions.map { MQTTReasonCode($0.qos.rawValue) }
                MQTTPacket.suback(MQTTSubAck(packetID: subscribe.packetID, reasonCodes: codes))
                    .encode(into: &out, version: version)
                if stats.forward && !isSubscriber {
                    isSubscriber = true
                    stats.subscribers.append(self)
                }
            case .unsubscribe(let unsubscribe):
                MQTTPacket.unsuback(
                    MQTTUnsubAck(
                        packetID: unsubscribe.packetID,
                        reasonCodes: unsubscribe.filters.map { _ in .success })
                )
                .encode(into: &out, version: version)
            default:
                break
            }
        }
    }

    private func appendAck(_ firstByte: UInt8, _ id: UInt16) {
        out.writeInteger(UInt16(firstByte) << 8 | 2)
        out.writeInteger(id)
    }
}

/// Starts the sink on `group`; returns the server channel and the per-loop stats.
func startSink(group: any EventLoopGroup, host: String, port: Int, forward: Bool) throws -> (any Channel, [NIOLoopBound<SinkStats>]) {
    var stats: [NIOLoopBound<SinkStats>] = []
    for loop in group.makeIterator() {
        stats.append(try loop.submit { NIOLoopBound(SinkStats(forward: forward), eventLoop: loop) }.wait())
    }
    let byLoop = stats
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.backlog, value: 4096)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                guard let bound = byLoop.first(where: { $0.eventLoop === channel.eventLoop }) else {
                    throw ChannelError.ioOnClosedChannel
                }
                try channel.pipeline.syncOperations.addHandler(SinkHandler(stats: bound.value))
            }
        }
        .bind(host: host, port: port)
        .wait()
    return (channel, stats)
}
