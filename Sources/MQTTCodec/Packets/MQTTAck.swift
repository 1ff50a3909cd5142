import NIOCore

/// PUBACK, PUBREC, PUBREL and PUBCOMP [MQTT-3.4 – 3.7]: one shape, four packet types.
/// `MQTTPacket` keeps them apart by case; this struct holds their shared fields.
public struct MQTTAck: Sendable, Hashable {
    public var packetID: UInt16
    public var reasonCode: MQTTReasonCode
    public var properties: MQTTProperties

    public init(packetID: UInt16, reasonCode: MQTTReasonCode = .success, properties: MQTTProperties = []) {
        (self.packetID, self.reasonCode, self.properties) = (packetID, reasonCode, properties)
    }

    static func decode(type: MQTTPacketType, body: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTCodecError) -> Self {
        let packetID = try body.readMQTTPacketID(in: type)
        var ack = MQTTAck(packetID: packetID)
        if version.hasProperties {
            // Reason code and properties may be omitted: length 2 means Success, no properties
            // [MQTT-3.4.2.1]; length 3 means no properties [MQTT-3.4.2.2.1].
            if body.readableBytes > 0 {
                ack.reasonCode = try MQTTReasonCode.read(from: &body, in: type)
            }
            if body.readableBytes > 0 {
                ack.properties = try MQTTProperties.read(from: &body, context: .init(type))
            }
        }
        try body.expectMQTTEnd(of: type)
        return ack
    }

    func bodySize(version: MQTTProtocolVersion) -> Int {
        guard version.hasProperties else { return 2 }
        if properties.isEmpty { return reasonCode == .success ? 2 : 3 }
        return 3 + properties.encodedSize
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetID, endianness: .big)
        guard version.hasProperties else { return }
        if properties.isEmpty && reasonCode == .success { return }
        buffer.writeInteger(reasonCode.rawValue)
        if !properties.isEmpty { properties.write(to: &buffer) }
    }
}
