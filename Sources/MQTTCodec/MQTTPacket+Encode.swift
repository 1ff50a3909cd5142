public import NIOCore

extension MQTTPacket {
    private func withCoding<R>(_ body: (any MQTTPacketCoding) -> R, ack: (MQTTAck) -> R, empty: () -> R) -> R {
        switch self {
        case .connect(let p): body(p)
        case .connack(let p): body(p)
        case .publish(let p): body(p)
        case .puback(let a), .pubrec(let a), .pubrel(let a), .pubcomp(let a): ack(a)
        case .subscribe(let p): body(p)
        case .suback(let p): body(p)
        case .unsubscribe(let p): body(p)
        case .unsuback(let p): body(p)
        case .pingreq, .pingresp: empty()
        case .disconnect(let p): body(p)
        case .auth(let p): body(p)
        }
    }

    /// The Remaining Length of this packet.
    public func bodySize(version: MQTTProtocolVersion) -> Int {
        withCoding({ $0.bodySize(version: version) }, ack: { $0.bodySize(version: version) }, empty: { 0 })
    }

    /// The whole packet's size on the wire, fixed header included (what Maximum Packet Size
    /// limits [MQTT-3.1.2-24]).
    public func encodedSize(version: MQTTProtocolVersion) -> Int {
        let body = bodySize(version: version)
        return 1 + MQTTSize.variableByteInteger(body) + body
    }

    /// Appends the encoded packet to `buffer`.
    public func encode(into buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        let type = self.type
        let flags = withCoding({ $0.flags(version: version) }, ack: { _ in type.requiredFlags ?? 0 }, empty: { 0 })
        let size = bodySize(version: version)
        buffer.reserveCapacity(minimumWritableBytes: 5 + size)
        buffer.writeInteger(type.rawValue << 4 | flags)
        buffer.writeMQTTVariableByteInteger(size)
        withCoding({ $0.writeBody(to: &buffer, version: version) },
                   ack: { $0.writeBody(to: &buffer, version: version) }, empty: {})
    }

    /// The encoded packet in a new buffer.
    public func encoded(version: MQTTProtocolVersion, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: encodedSize(version: version))
        encode(into: &buffer, version: version)
        return buffer
    }
}
