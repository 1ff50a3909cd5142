public import NIOCore

/// Frames and decodes packets in one step. As a server it learns the protocol version from the
/// CONNECT (which must come first [MQTT-3.1.0-1]); as a client it is told the version.
public struct MQTTPacketDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = MQTTPacket

    public var role: MQTTRole
    /// nil for a server until CONNECT has been decoded.
    public var version: MQTTProtocolVersion?
    public var maximumPacketSize: Int

    public init(role: MQTTRole, version: MQTTProtocolVersion? = nil, maximumPacketSize: Int = 1 << 20) {
        (self.role, self.version, self.maximumPacketSize) = (role, version, maximumPacketSize)
    }

    /// Decodes the next packet from `buffer`, or returns nil when it is incomplete.
    public mutating func next(from buffer: inout ByteBuffer) throws(MQTTCodecError) -> MQTTPacket? {
        guard let frame = try MQTTFrame.read(from: &buffer, maximumPacketSize: maximumPacketSize) else {
            return nil
        }
        guard let version else {
            guard frame.typeAndFlags >> 4 == MQTTPacketType.connect.rawValue || role == .client else {
                throw .protocolError("the first packet is not CONNECT", spec: "MQTT-3.1.0-1")
            }
            let packet = try MQTTPacket.decode(frame, version: .v5, role: role)
            if case .connect(let connect) = packet { self.version = connect.version }
            return packet
        }
        return try MQTTPacket.decode(frame, version: version, role: role)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let packet = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(packet))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF _: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Encodes packets for a known protocol version.
public struct MQTTPacketEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = MQTTPacket
    public var version: MQTTProtocolVersion

    public init(version: MQTTProtocolVersion) { self.version = version }

    public func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        data.encode(into: &out, version: version)
    }
}
