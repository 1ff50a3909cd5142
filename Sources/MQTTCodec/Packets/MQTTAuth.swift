public import NIOCore

/// AUTH [MQTT-3.15] (5.0 only): a step of extended authentication.
public struct MQTTAuth: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.auth

    public var reasonCode: MQTTReasonCode
    public var properties: MQTTProperties

    public init(reasonCode: MQTTReasonCode = .success, properties: MQTTProperties = []) {
        (self.reasonCode, self.properties) = (reasonCode, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        var auth = MQTTAuth()
        // Length 0 means Success without properties [MQTT-3.15.2.1].
        if body.readableBytes > 0 {
            auth.reasonCode = try MQTTReasonCode.read(from: &body, in: .auth)
        }
        if body.readableBytes > 0 {
            auth.properties = try MQTTProperties.read(from: &body, context: .auth)
        }
        try body.expectMQTTEnd(of: .auth)
        return auth
    }

    public func bodySize(version _: MQTTProtocolVersion) -> Int {
        properties.isEmpty && reasonCode == .success ? 0 : 1 + properties.encodedSize
    }

    public func writeBody(to buffer: inout ByteBuffer, version _: MQTTProtocolVersion) {
        if properties.isEmpty && reasonCode == .success { return }
        buffer.writeInteger(reasonCode.rawValue)
        properties.write(to: &buffer)
    }
}
