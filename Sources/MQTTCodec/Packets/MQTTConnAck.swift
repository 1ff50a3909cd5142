public import NIOCore

/// CONNACK [MQTT-3.2]: the server's answer to CONNECT.
public struct MQTTConnAck: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.connack

    public var sessionPresent: Bool
    /// 5.0 reason code; for 3.x the return code's 5.0 equivalent (see `MQTTConnectReturnCode`).
    public var reasonCode: MQTTReasonCode
    public var properties: MQTTProperties

    public init(sessionPresent: Bool = false, reasonCode: MQTTReasonCode = .success, properties: MQTTProperties = []) {
        (self.sessionPresent, self.reasonCode, self.properties) = (sessionPresent, reasonCode, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let ackFlags = try body.readMQTTByte("connect acknowledge flags")
        // 3.1 has no flags byte semantics: the byte is reserved and unused.
        if version > .v3_1 && ackFlags & 0xFE != 0 {
            throw .malformed("reserved connect acknowledge flags are set", spec: "MQTT-3.2.2-1")
        }
        let sessionPresent = version > .v3_1 && ackFlags & 0x01 != 0
        let reasonCode: MQTTReasonCode
        var properties: MQTTProperties = []
        if version.hasProperties {
            reasonCode = try MQTTReasonCode.read(from: &body, in: .connack)
            properties = try MQTTProperties.read(from: &body, context: .connack)
        } else {
            let raw = try body.readMQTTByte("connect return code")
            guard let code = MQTTConnectReturnCode(rawValue: raw) else {
                throw .malformed("connect return code \(raw) is not defined")
            }
            reasonCode = code.reasonCode
        }
        if sessionPresent && !reasonCode.isSuccess {
            throw .protocolError("Session Present is 1 with a failure reason code", spec: "MQTT-3.2.2-6")
        }
        try body.expectMQTTEnd(of: .connack)
        return MQTTConnAck(sessionPresent: sessionPresent, reasonCode: reasonCode, properties: properties)
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        2 + (version.hasProperties ? properties.encodedSize : 0)
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(UInt8(sessionPresent && version > .v3_1 ? 1 : 0))
        if version.hasProperties {
            buffer.writeInteger(reasonCode.rawValue)
            properties.write(to: &buffer)
        } else {
            buffer.writeInteger(MQTTConnectReturnCode(reasonCode).rawValue)
        }
    }
}
