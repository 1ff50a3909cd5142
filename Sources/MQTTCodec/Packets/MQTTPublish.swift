public import NIOCore

/// PUBLISH [MQTT-3.3]: an application message, in either direction.
public struct MQTTPublish: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.publish

    /// The Topic Name; empty in 5.0 when a Topic Alias stands for it.
    public var topic: String
    public var payload: ByteBuffer
    public var qos: MQTTQoS
    public var retain: Bool
    public var dup: Bool
    /// Present exactly when `qos` is 1 or 2 [MQTT-2.2.1-2].
    public var packetID: UInt16?
    public var properties: MQTTProperties

    public init(
        topic: String,
        payload: ByteBuffer,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        dup: Bool = false,
        packetID: UInt16? = nil,
        properties: MQTTProperties = []
    ) {
        (self.topic, self.payload, self.qos, self.retain, self.dup, self.packetID) = (topic, payload, qos, retain, dup, packetID)
        self.properties = properties
    }

    public static func decode(flags: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let dup = flags & 0x08 != 0
        let retain = flags & 0x01 != 0
        guard let qos = MQTTQoS(rawValue: (flags >> 1) & 0x03) else {
            throw .malformed("PUBLISH has QoS 3", spec: "MQTT-3.3.1-4")
        }
        if qos == .atMostOnce && dup {
            throw .protocolError("PUBLISH has DUP 1 at QoS 0", spec: "MQTT-3.3.1-2")
        }
        let topic = try body.readMQTTString("topic name")
        let packetID = qos == .atMostOnce ? nil : try body.readMQTTPacketID(in: .publish)
        let properties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .publish) : []
        if topic.isEmpty {
            // 5.0 allows an empty Topic Name only with a Topic Alias [MQTT-3.3.2-1, 3.3.2.3.4].
            guard version.hasProperties, properties.topicAlias != nil else {
                throw .protocolError("PUBLISH has an empty topic name and no Topic Alias", spec: "MQTT-4.7.3-1")
            }
        } else {
            try MQTTTopic.validateName(topic)
        }
        if role == .server && !properties.subscriptionIdentifiers.isEmpty {
            throw .protocolError("a client's PUBLISH carries a Subscription Identifier", spec: "MQTT-3.3.4-6")
        }
        let payload = body.readSlice(length: body.readableBytes)!
        return MQTTPublish(
            topic: topic, payload: payload, qos: qos, retain: retain, dup: dup,
            packetID: packetID, properties: properties)
    }

    public func flags(version _: MQTTProtocolVersion) -> UInt8 {
        (dup ? 0x08 : 0) | (qos.rawValue << 1) | (retain ? 0x01 : 0)
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        MQTTSize.string(topic) + (qos == .atMostOnce ? 0 : 2)
            + (version.hasProperties ? properties.encodedSize : 0) + payload.readableBytes
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTString(topic)
        if qos != .atMostOnce { buffer.writeInteger(packetID ?? 0, endianness: .big) }
        if version.hasProperties { properties.write(to: &buffer) }
        buffer.writeImmutableBuffer(payload)
    }
}
