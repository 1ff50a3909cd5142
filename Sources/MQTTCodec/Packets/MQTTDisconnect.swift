public import NIOCore

/// DISCONNECT [MQTT-3.14]. In 3.x it has no body; in 5.0 either side may send it with a
/// reason code and properties.
public struct MQTTDisconnect: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.disconnect

    public var reasonCode: MQTTReasonCode
    public var properties: MQTTProperties

    public init(reasonCode: MQTTReasonCode = .normalDisconnection, properties: MQTTProperties = []) {
        (self.reasonCode, self.properties) = (reasonCode, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        var disconnect = MQTTDisconnect()
        if version.hasProperties {
            // Length 0 means Normal disconnection without properties [MQTT-3.14.2.1].
            if body.readableBytes > 0 {
                disconnect.reasonCode = try MQTTReasonCode.read(from: &body, in: .disconnect)
            }
            if body.readableBytes > 0 {
                disconnect.properties = try MQTTProperties.read(from: &body, context: .disconnect)
            }
            // Table 3.10 "Sent by": 0x04 only from clients; 0x87-0xA2 except the shared ones only
            // from servers.
            let fromServerOnly: Set<UInt8> = [0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2]
            let code = disconnect.reasonCode.rawValue
            if (role == .server && fromServerOnly.contains(code)) || (role == .client && code == 0x04) {
                throw .protocolError(
                    "DISCONNECT reason \(disconnect.reasonCode) may not be sent by a \(role == .server ? "client" : "server")",
                    spec: "MQTT-3.14.2-1")
            }
            if role == .client && disconnect.properties.sessionExpiryInterval != nil {
                throw .protocolError("the server's DISCONNECT carries a Session Expiry Interval", spec: "MQTT-3.14.2-2")
            }
        }
        try body.expectMQTTEnd(of: .disconnect)
        return disconnect
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        guard version.hasProperties else { return 0 }
        if properties.isEmpty { return reasonCode == .normalDisconnection ? 0 : 1 }
        return 1 + properties.encodedSize
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        guard version.hasProperties else { return }
        if properties.isEmpty && reasonCode == .normalDisconnection { return }
        buffer.writeInteger(reasonCode.rawValue)
        if !properties.isEmpty { properties.write(to: &buffer) }
    }
}
