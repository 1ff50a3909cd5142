public import NIOCore

/// CONNECT [MQTT-3.1]: the first packet a client sends.
public struct MQTTConnect: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.connect

    public var version: MQTTProtocolVersion
    /// May be empty: MQTT 5.0 then assigns one; 3.1.1 only with Clean Session 1.
    public var clientID: String
    /// Clean Session in 3.1 / 3.1.1, Clean Start in 5.0.
    public var cleanStart: Bool
    /// Seconds; 0 turns keep alive off.
    public var keepAlive: UInt16
    public var username: String?
    public var password: ByteBuffer?
    public var will: MQTTWill?
    public var properties: MQTTProperties

    public init(
        version: MQTTProtocolVersion = .v5,
        clientID: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 60,
        username: String? = nil,
        password: ByteBuffer? = nil,
        will: MQTTWill? = nil,
        properties: MQTTProperties = []
    ) {
        (self.version, self.clientID, self.cleanStart, self.keepAlive, self.username) = (version, clientID, cleanStart, keepAlive, username)
        (self.password, self.will, self.properties) = (password, will, properties)
    }

    private enum Flag {
        static let reserved: UInt8 = 0x01
        static let cleanStart: UInt8 = 0x02
        static let will: UInt8 = 0x04
        static let willQoSShift: UInt8 = 3
        static let willRetain: UInt8 = 0x20
        static let password: UInt8 = 0x40
        static let username: UInt8 = 0x80
    }

    /// CONNECT carries its own version, so `version` is ignored when decoding.
    public static func decode(flags: UInt8, body: inout ByteBuffer, version _: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let name = try body.readMQTTString("protocol name")
        let level = try body.readMQTTByte("protocol level")
        guard name == "MQTT" || name == "MQIsdp" else {
            // [MQTT-3.1.2-1]: an incorrect Protocol Name ends processing under this specification.
            throw .protocolError("protocol name \"\(name)\" is neither \"MQTT\" nor \"MQIsdp\"", spec: "MQTT-3.1.2-1")
        }
        guard let version = MQTTProtocolVersion(rawValue: level), version.protocolName == name else {
            // [MQTT-3.1.2-2]: CONNACK 0x84 (5.0) / return code 0x01 (3.1.1), then close.
            throw MQTTCodecError(
                .unsupportedProtocolVersion,
                "protocol \"\(name)\" level \(level) is not supported (3.1 = MQIsdp/3, 3.1.1 = MQTT/4, 5.0 = MQTT/5)",
                spec: "MQTT-3.1.2-2", connectReturnCode: .unacceptableProtocolVersion)
        }
        do {
            return try decodeBody(version: version, body: &body)
        } catch {
            var error = error
            error.protocolVersion = version
            throw error
        }
    }

    private static func decodeBody(version: MQTTProtocolVersion, body: inout ByteBuffer) throws(MQTTCodecError) -> Self {
        let flags = try body.readMQTTByte("connect flags")
        guard flags & Flag.reserved == 0 else {
            throw .malformed("the reserved connect flag is 1", spec: "MQTT-3.1.2-3")
        }
        let hasWill = flags & Flag.will != 0
        let willQoSRaw = (flags >> Flag.willQoSShift) & 0x03
        let willRetain = flags & Flag.willRetain != 0
        if !hasWill {
            guard willQoSRaw == 0 else { throw .malformed("Will QoS is \(willQoSRaw) without a Will Flag", spec: "MQTT-3.1.2-11") }
            guard !willRetain else { throw .malformed("Will Retain is set without a Will Flag", spec: "MQTT-3.1.2-13") }
        }
        guard let willQoS = MQTTQoS(rawValue: willQoSRaw) else {
            throw .malformed("Will QoS is 3", spec: "MQTT-3.1.2-12")
        }
        let hasUsername = flags & Flag.username != 0
        let hasPassword = flags & Flag.password != 0
        if version < .v5 && hasPassword && !hasUsername {
            // 3.1.1 [MQTT-3.1.2-22]: no password without a user name (5.0 allows it).
            throw .protocolError("Password Flag is set without User Name Flag", spec: "MQTT-3.1.2-22")
        }
        let keepAlive = try body.readMQTTUInt16("keep alive")
        let properties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .connect) : []
        if properties.authenticationData != nil && properties.authenticationMethod == nil {
            throw .protocolError("Authentication Data without Authentication Method", spec: "MQTT-3.1.2.11.10")
        }

        let clientID = try body.readMQTTString("client identifier")
        if clientID.isEmpty && version == .v3_1 {
            // 3.1: the Client Identifier is 1 to 23 characters; anything else is return code 2.
            throw MQTTCodecError(
                .clientIdentifierNotValid, "MQTT 3.1 requires a client identifier",
                connectReturnCode: .identifierRejected)
        }
        if clientID.isEmpty && version == .v3_1_1 && flags & Flag.cleanStart == 0 {
            throw MQTTCodecError(
                .clientIdentifierNotValid, "an empty client identifier needs Clean Session 1",
                spec: "MQTT-3.1.3-8", connectReturnCode: .identifierRejected)
        }
        var will: MQTTWill?
        if hasWill {
            let willProperties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .will) : []
            let topic = try body.readMQTTString("will topic")
            try MQTTTopic.validateName(topic, spec: "MQTT-3.1.3-11")
            let payload = try body.readMQTTBinary("will payload")
            will = MQTTWill(topic: topic, payload: payload, qos: willQoS, retain: willRetain, properties: willProperties)
        }
        let username = hasUsername ? try body.readMQTTString("user name") : nil
        let password = hasPassword ? try body.readMQTTBinary("password") : nil
        try body.expectMQTTEnd(of: .connect)
        return MQTTConnect(
            version: version, clientID: clientID, cleanStart: flags & Flag.cleanStart != 0,
            keepAlive: keepAlive, username: username, password: password, will: will,
            properties: properties)
    }

    public func bodySize(version _: MQTTProtocolVersion) -> Int {
        var size = MQTTSize.string(version.protocolName) + 1 + 1 + 2
        if version.hasProperties { size += properties.encodedSize }
        size += MQTTSize.string(clientID)
        if let will {
            if version.hasProperties { size += will.properties.encodedSize }
            size += MQTTSize.string(will.topic) + MQTTSize.binary(will.payload)
        }
        if let username { size += MQTTSize.string(username) }
        if let password { size += MQTTSize.binary(password) }
        return size
    }

    public func writeBody(to buffer: inout ByteBuffer, version _: MQTTProtocolVersion) {
        buffer.writeMQTTString(version.protocolName)
        buffer.writeInteger(version.rawValue)
        var flags: UInt8 = 0
        if cleanStart { flags |= Flag.cleanStart }
        if let will {
            flags |= Flag.will | (will.qos.rawValue << Flag.willQoSShift)
            if will.retain { flags |= Flag.willRetain }
        }
        if username != nil { flags |= Flag.username }
        if password != nil { flags |= Flag.password }
        buffer.writeInteger(flags)
        buffer.writeInteger(keepAlive, endianness: .big)
        if version.hasProperties { properties.write(to: &buffer) }
        buffer.writeMQTTString(clientID)
        if let will {
            if version.hasProperties { will.properties.write(to: &buffer) }
            buffer.writeMQTTString(will.topic)
            buffer.writeMQTTBinary(will.payload)
        }
        if let username { buffer.writeMQTTString(username) }
        if let password { buffer.writeMQTTBinary(password) }
    }
}

/// The Will Message of a CONNECT [MQTT-3.1.2.5].
public struct MQTTWill: Sendable, Hashable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: MQTTQoS
    public var retain: Bool
    /// Will Properties (5.0): Will Delay Interval and the PUBLISH properties.
    public var properties: MQTTProperties

    public init(topic: String, payload: ByteBuffer, qos: MQTTQoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = []) {
        (self.topic, self.payload, self.qos, self.retain, self.properties) = (topic, payload, qos, retain, properties)
    }
}
