public import NIOCore

/// SUBACK [MQTT-3.9]: one reason code per topic filter of the SUBSCRIBE, in order.
public struct MQTTSubAck: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.suback

    public var packetID: UInt16
    public var reasonCodes: [MQTTReasonCode]
    public var properties: MQTTProperties

    public init(packetID: UInt16, reasonCodes: [MQTTReasonCode], properties: MQTTProperties = []) {
        (self.packetID, self.reasonCodes, self.properties) = (packetID, reasonCodes, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let packetID = try body.readMQTTPacketID(in: .suback)
        let properties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .suback) : []
        var codes: [MQTTReasonCode] = []
        while body.readableBytes > 0 {
            if version.hasProperties {
                codes.append(try MQTTReasonCode.read(from: &body, in: .suback))
            } else {
                let raw = try body.readMQTTByte("return code")
                // 3.1.1 [MQTT-3.9.3-2]: 0x00, 0x01, 0x02 or 0x80.
                guard raw <= 2 || raw == 0x80 else {
                    throw .malformed("SUBACK return code 0x\(String(raw, radix: 16)) is not defined", spec: "MQTT-3.9.3-2")
                }
                codes.append(MQTTReasonCode(raw))
            }
        }
        guard !codes.isEmpty else { throw .protocolError("SUBACK has no return code") }
        return MQTTSubAck(packetID: packetID, reasonCodes: codes, properties: properties)
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        2 + (version.hasProperties ? properties.encodedSize : 0) + reasonCodes.count
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetID, endianness: .big)
        if version.hasProperties { properties.write(to: &buffer) }
        for code in reasonCodes {
            // 3.1.1 knows only 0x00-0x02 and 0x80: any 5.0 failure becomes 0x80.
            buffer.writeInteger(version.hasProperties || code.isSuccess ? code.rawValue : 0x80)
        }
    }
}
