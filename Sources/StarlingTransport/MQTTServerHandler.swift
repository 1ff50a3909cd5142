public import MQTTCodec
public import NIOCore
public import StarlingCore

/// The last handler of a client channel: hands decoded packets and connection events to the
/// broker and carries out its writes. It is the broker's `ClientTransport` for this channel.
/// Runs on the broker's event loop, like the broker.
public final class MQTTServerHandler: ChannelInboundHandler, ClientTransport {
    public typealias InboundIn = MQTTPacket
    public typealias OutboundOut = ByteBuffer

    private let broker: Broker
    private var context: ChannelHandlerContext?
    private var connection: Connection?
    public private(set) var remoteAddress = "unknown"

    public init(broker: Broker) {
        self.broker = broker
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        remoteAddress = context.channel.remoteAddress?.description ?? "unknown"
        if context.channel.isActive { activate() }
    }

    public func channelActive(context: ChannelHandlerContext) {
        activate()
        context.fireChannelActive()
    }

    private func activate() {
        guard connection == nil else { return }
        connection = broker.accept(self)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        broker.received(unwrapInboundIn(data), on: connection)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        broker.flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if let connection { broker.closed(connection) }
        broker.flush()
        self.context = nil
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Losing writability is reported from inside a write: only the return of writability
        // needs work (sending what was queued meanwhile).
        guard context.channel.isWritable, let connection else { return }
        broker.writabilityChanged(connection)
        broker.flush()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let connection else { return context.close(promise: nil) }
        if let codecError = error as? MQTTCodecError {
            broker.decodeFailed(codecError, on: connection)
        } else {
            broker.closed(connection)
            context.close(promise: nil)
        }
        broker.flush()
    }

    // MARK: ClientTransport

    public func write(_ packet: MQTTPacket, version: MQTTProtocolVersion) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: packet.encodedSize(version: version))
        packet.encode(into: &buffer, version: version)
        broker.recordBytes(sent: buffer.readableBytes)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    public func flush() {
        context?.flush()
    }

    public func close() {
        context?.close(promise: nil)
    }

    public var isWritable: Bool { context?.channel.isWritable ?? false }

    public func setReading(_ enabled: Bool) {
        guard let channel = context?.channel else { return }
        channel.setOption(.autoRead, value: enabled).whenSuccess {
            if enabled { channel.read() }
        }
    }
}

/// Counts received bytes before framing, for `$SYS/broker/load/bytes/received`.
final class ByteCounter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let broker: Broker

    init(broker: Broker) { self.broker = broker }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        broker.recordBytes(received: unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }
}
