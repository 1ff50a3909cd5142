public import NIOCore

extension MQTTPacket {
    // Each packet is handled in its own case: going through `any MQTTPacketCoding` would box
    // the packet struct on the heap for every encode (measured: it cost more than the encoding).

    /// The Remaining Length of this packet.
    public func bodySize(version: MQTTProtocolVersion) -> Int {
        switch self {
        case .connect(let p): p.bodySize(version: version)
        case .connack(let p): p.bodySize(version: version)
        case .publish(let p): p.bodySize(version: version)
        case .puback(let a), .pubrec(let a), .pubrel(let a), .pubcomp(let a): a.bodySize(version: version)
        case .subscribe(let p): p.bodySize(version: version)
        case .suback(let p): p.bodySize(version: version)
        case .unsubscribe(let p): p.bodySize(version: version)
        case .unsuback(let p): p.bodySize(version: version)
        case .pingreq, .pingresp: 0
        case .disconnect(let p): p.bodySize(version: version)
        case .auth(let p): p.bodySize(version: version)
        }
    }

    /// The whole packet's size on the wire, fixed header included (what Maximum Packet Size
    /// limits [MQTT-3.1.2-24]).
    public func encodedSize(version: MQTTProtocolVersion) -> Int {
        let body = bodySize(version: version)
        return 1 + MQTTSize.variableByteInteger(body) + body
    }

    /// Appends the encoded packet to `buffer`.
    public func encode(into buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        let size = bodySize(version: version)
        buffer.reserveCapacity(minimumWritableBytes: 5 + size)
        let flags: UInt8 = if case .publish(let p) = self { p.flags(version: version) } else { type.requiredFlags ?? 0 }
        buffer.writeInteger(type.rawValue << 4 | flags)
        buffer.writeMQTTVariableByteInteger(size)
        switch self {
        case .connect(let p): p.writeBody(to: &buffer, version: version)
        case .connack(let p): p.writeBody(to: &buffer, version: version)
        case .publish(let p): p.writeBody(to: &buffer, version: version)
        case .puback(let a), .pubrec(let a), .pubrel(let a), .pubcomp(let a): a.writeBody(to: &buffer, version: version)
        case .subscribe(let p): p.writeBody(to: &buffer, version: version)
        case .suback(let p): p.writeBody(to: &buffer, version: version)
        case .unsubscribe(let p): p.writeBody(to: &buffer, version: version)
        case .unsuback(let p): p.writeBody(to: &buffer, version: version)
        case .pingreq, .pingresp: break
        case .disconnect(let p): p.writeBody(to: &buffer, version: version)
        case .auth(let p): p.writeBody(to: &buffer, version: version)
        }
    }

    /// The encoded packet in a new buffer.
    public func encoded(version: MQTTProtocolVersion, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: encodedSize(version: version))
        encode(into: &buffer, version: version)
        return buffer
    }
}
