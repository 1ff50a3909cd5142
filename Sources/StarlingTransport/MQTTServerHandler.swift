public import MQTTCodec
public import NIOCore
public import StarlingCore

/// The one handler of a client channel: frames and decodes what arrives (the declared size is
/// checked before anything is buffered), hands packets and connection events to the broker, and
/// carries out its writes. It is the broker's `ClientTransport` for this channel. One handler
/// instead of a decoder, a byte counter and a handler keeps an idle connection small. Runs on
/// the broker's event loop, like the broker.
public final class MQTTServerHandler: ChannelInboundHandler, ClientTransport {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let broker: Broker
    private var context: ChannelHandlerContext?
    private var connection: Connection?
    /// Bytes read and not yet decoded, cut into packets.
    private var reader: MQTTPacketReader
    /// Packets written since the last flush, encoded back to back; nil when there are none.
    private var outbound: ByteBuffer?
    private static let initialOutboundCapacity = 256
    private static let outboundWriteThreshold = 64 * 1024
    private var failed = false
    /// After the broker's last packet: bytes the client may still send before the close.
    private var lingerBudget: Int?
    static let lingerBytes = 64 * 1024
    static let lingerTime = TimeAmount.seconds(2)
    /// Kept for `remoteAddress`, which is only needed for log lines and authentication: the
    /// address's text is made when asked for, not stored for every idle connection.
    private var channel: (any Channel)?

    /// The listener's configured address is a loopback one (`isLoopbackClient`).
    private let loopbackListener: Bool
    /// The client's address as a trusted HTTP proxy named it (`TrustedProxies`), for a
    /// WebSocket connection through one.
    private let forwardedClient: String?

    public init(broker: Broker, maximumPacketSize: Int, loopbackListener: Bool = false, forwardedClient: String? = nil) {
        (self.broker, self.loopbackListener, self.forwardedClient) = (broker, loopbackListener, forwardedClient)
        self.reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .server, maximumPacketSize: maximumPacketSize))
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
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
        var buffer = unwrapInboundIn(data)
        if let budget = lingerBudget {
            // Closing: what the client still sends is read and discarded, up to a bound.
            lingerBudget = budget - buffer.readableBytes
            if budget - buffer.readableBytes <= 0 { context.close(promise: nil) }
            return
        }
        guard let connection, !failed else { return }
        broker.recordBytes(received: buffer.readableBytes)
        guard reader.receive(&buffer) else { return }  // a read further up the stack decodes them
        defer { reader.finish(allocator: context.channel.allocator) }
        do {
            while let packet = try reader.next() {
                broker.received(packet, on: connection)
                if lingerBudget != nil || context.channel.isActive == false { return }
            }
        } catch {
            // Answer as the specification says and close; nothing after the bad bytes is read.
            failed = true
            broker.decodeFailed(error, on: connection)
            return
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        broker.flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if let connection { broker.closed(connection) }
        broker.flush()
        self.context = nil
        outbound = nil
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Losing writability is reported from inside a write: only the return of writability
        // needs work (sending what was queued meanwhile).
        guard context.channel.isWritable, let connection else { return }
        broker.writabilityChanged(connection)
        broker.flush()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let connection, let refusal = error as? ProxyProtocolHandler.Failure {
            broker.transportRefused(connection, reason: "\(refusal)")
        }
        if let connection { broker.closed(connection) }
        context.close(promise: nil)
        broker.flush()
    }

    // MARK: ClientTransport

    public func write(_ packet: MQTTPacket, version: MQTTProtocolVersion) {
        guard let context else { return }
        // Packets are encoded back to back into one buffer, handed to the channel at the flush:
        // one allocation and one pending write per flush instead of one per packet.
        var buffer = outbound.take() ?? context.channel.allocator.buffer(capacity: Self.initialOutboundCapacity)
        let start = buffer.writerIndex
        packet.encode(into: &buffer, version: version)
        broker.recordBytes(sent: buffer.writerIndex - start)
        if buffer.readableBytes >= Self.outboundWriteThreshold {
            // A long run goes to the channel now, so its writability (back pressure) counts it.
            context.write(wrapOutboundOut(buffer), promise: nil)
        } else {
            outbound = buffer
        }
    }

    public func flush() {
        guard let context else { return }
        if let buffer = outbound.take() { context.write(wrapOutboundOut(buffer), promise: nil) }
        context.flush()
    }

    /// Closes like a careful HTTP server: after the last packet (a DISCONNECT or refusing
    /// CONNACK with its reason), the write side is shut down and what the client still sends is
    /// read and discarded for up to `lingerTime` or `lingerBytes`, then the connection closes.
    /// Closing at once with unread bytes makes the kernel send a reset, and the reset makes the
    /// client's kernel discard the reason it has not read yet.
    public func close() {
        guard let context else { return }
        if outbound != nil { flush() }
        guard lingerBudget == nil, context.channel.isActive else { return context.close(promise: nil) }
        lingerBudget = Self.lingerBytes
        reader.discardPending()
        // Unsupported below (a TLS library without half-closure): then only the linger applies.
        context.close(mode: .output, promise: nil)
        setReading(true)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
    }

    /// The client's address: as a trusted HTTP proxy named it, else as a load balancer announced
    /// it (PROXY protocol), else the peer's.
    public var remoteAddress: String {
        let proxied = try? channel?.pipeline.syncOperations.handler(type: ProxyProtocolHandler.self).source
        let peer = (proxied ?? channel?.remoteAddress)?.description ?? "unknown"
        return forwardedClient.map { "\($0) (forwarded by \(peer))" } ?? peer
    }

    public var isWritable: Bool { context?.channel.isWritable ?? false }

    public var isLoopbackClient: Bool {
        if let forwardedClient { return ListenAddress.isLoopback(forwardedClient) }
        if let proxy = try? channel?.pipeline.syncOperations.handler(type: ProxyProtocolHandler.self) {
            // Behind a balancer, its own (often local) address proves nothing: the client's
            // announced address decides; a header without one (LOCAL) is not local.
            return proxy.source?.ipAddress.map { ListenAddress.isLoopback($0) } ?? false
        }
        return loopbackListener
    }

    public func setReading(_ enabled: Bool) {
        guard let channel = context?.channel else { return }
        channel.setOption(.autoRead, value: enabled).whenSuccess {
            if enabled { channel.read() }
        }
    }
}
