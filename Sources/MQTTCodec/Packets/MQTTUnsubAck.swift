public import NIOCore

/// UNSUBACK [MQTT-3.11]: in 5.0 one reason code per topic filter; in 3.x only the packet id.
public struct MQTTUnsubAck: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.unsuback

    public var packetID: UInt16
    /// Empty for 3.1 and 3.1.1.
    public var reasonCodes: [MQTTReasonCode]
    public var properties: MQTTProperties

    public init(packetID: UInt16, reasonCodes: [MQTTReasonCode] = [], properties: MQTTProperties = []) {
        (self.packetID, self.reasonCodes, self.properties) = (packetID, reasonCodes, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let packetID = try body.readMQTTPacketID(in: .unsuback)
        var ack = MQTTUnsubAck(packetID: packetID)
        if version.hasProperties {
            ack.properties = try MQTTProperties.read(from: &body, context: .unsuback)
            while body.readableBytes > 0 {
                ack.reasonCodes.append(try MQTTReasonCode.read(from: &body, in: .unsuback))
            }
            guard !ack.reasonCodes.isEmpty else { throw .protocolError("UNSUBACK has no reason code") }
        }
        try body.expectMQTTEnd(of: .unsuback)
        return ack
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        version.hasProperties ? 2 + properties.encodedSize + reasonCodes.count : 2
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetID, endianness: .big)
        guard version.hasProperties else { return }
        properties.write(to: &buffer)
        for code in reasonCodes { buffer.writeInteger(code.rawValue) }
    }
}
