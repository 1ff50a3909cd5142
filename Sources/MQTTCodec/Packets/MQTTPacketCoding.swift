public import NIOCore

/// What every control packet struct implements: decode a body, and encode one whose size is
/// known before it is written (so the Remaining Length is written once, without copying).
public protocol MQTTPacketCoding: Sendable, Hashable {
    static var packetType: MQTTPacketType { get }
    /// Decodes the variable header and payload. `flags` is the low nibble of the fixed header,
    /// already checked by `MQTTPacket.decode` for every type except PUBLISH.
    static func decode(flags: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role: MQTTRole) throws(MQTTCodecError) -> Self
    /// The low nibble of the fixed header.
    func flags(version: MQTTProtocolVersion) -> UInt8
    /// The Remaining Length: size of variable header plus payload.
    func bodySize(version: MQTTProtocolVersion) -> Int
    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion)
}

extension MQTTPacketCoding {
    public func flags(version: MQTTProtocolVersion) -> UInt8 { Self.packetType.requiredFlags ?? 0 }
}

extension ByteBuffer {
    /// Reads a Packet Identifier, which must not be 0 [MQTT-2.2.1-3].
    @inlinable
    mutating func readMQTTPacketID(in type: MQTTPacketType) throws(MQTTCodecError) -> UInt16 {
        let id = try readMQTTUInt16("packet identifier of \(type)")
        guard id != 0 else {
            throw .protocolError("\(type) has packet identifier 0", spec: "MQTT-2.2.1-3")
        }
        return id
    }

    /// Fails when bytes remain after the packet's last field.
    @inlinable
    func expectMQTTEnd(of type: MQTTPacketType) throws(MQTTCodecError) {
        if readableBytes > 0 {
            throw .malformed("\(type) has \(readableBytes) unexpected trailing bytes")
        }
    }
}

extension MQTTReasonCode {
    /// Reads a reason code and checks it against the packet's table.
    static func read(from buffer: inout ByteBuffer, in type: MQTTPacketType) throws(MQTTCodecError) -> MQTTReasonCode {
        let raw = try buffer.readMQTTByte("reason code of \(type)")
        guard MQTTReasonCode.allowed(in: type).contains(raw) else {
            // The spec leaves the class of this error open; a byte that parses but is not allowed fits
            // the definition of a Protocol Error [MQTT-1.2].
            throw .protocolError("reason code 0x\(String(raw, radix: 16)) is not defined for \(type)")
        }
        return MQTTReasonCode(raw)
    }
}
