public import NIOCore

/// UNSUBSCRIBE [MQTT-3.10]: one or more topic filters to remove.
public struct MQTTUnsubscribe: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.unsubscribe

    public var packetID: UInt16
    public var filters: [MQTTTopicFilter]
    public var properties: MQTTProperties

    public init(packetID: UInt16, filters: [MQTTTopicFilter], properties: MQTTProperties = []) {
        (self.packetID, self.filters, self.properties) = (packetID, filters, properties)
    }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let packetID = try body.readMQTTPacketID(in: .unsubscribe)
        let properties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .unsubscribe) : []
        var filters: [MQTTTopicFilter] = []
        while body.readableBytes > 0 {
            filters.append(try MQTTTopicFilter(try body.readMQTTString("topic filter")))
        }
        guard !filters.isEmpty else {
            throw .protocolError("UNSUBSCRIBE has no topic filter", spec: "MQTT-3.10.3-2")
        }
        return MQTTUnsubscribe(packetID: packetID, filters: filters, properties: properties)
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        filters.reduce(2 + (version.hasProperties ? properties.encodedSize : 0)) { $0 + MQTTSize.string($1.raw) }
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetID, endianness: .big)
        if version.hasProperties { properties.write(to: &buffer) }
        for filter in filters { buffer.writeMQTTString(filter.raw) }
    }
}
