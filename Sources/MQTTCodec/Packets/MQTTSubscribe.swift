public import NIOCore

/// SUBSCRIBE [MQTT-3.8]: one or more topic filters with their options.
public struct MQTTSubscribe: MQTTPacketCoding {
    public static let packetType = MQTTPacketType.subscribe

    public var packetID: UInt16
    public var subscriptions: [MQTTSubscription]
    public var properties: MQTTProperties

    public init(packetID: UInt16, subscriptions: [MQTTSubscription], properties: MQTTProperties = []) {
        (self.packetID, self.subscriptions, self.properties) = (packetID, subscriptions, properties)
    }

    /// The Subscription Identifier of this SUBSCRIBE (5.0), if any.
    public var subscriptionIdentifier: Int? { properties.subscriptionIdentifiers.first }

    public static func decode(flags _: UInt8, body: inout ByteBuffer, version: MQTTProtocolVersion, role _: MQTTRole) throws(MQTTCodecError)
        -> Self
    {
        let packetID = try body.readMQTTPacketID(in: .subscribe)
        let properties = version.hasProperties ? try MQTTProperties.read(from: &body, context: .subscribe) : []
        var subscriptions: [MQTTSubscription] = []
        while body.readableBytes > 0 {
            let raw = try body.readMQTTString("topic filter")
            let filter = try MQTTTopicFilter(raw)
            let options = try body.readMQTTByte("subscription options")
            subscriptions.append(try MQTTSubscription(filter: filter, options: options, version: version))
        }
        guard !subscriptions.isEmpty else {
            throw .protocolError("SUBSCRIBE has no topic filter", spec: "MQTT-3.8.3-2")
        }
        return MQTTSubscribe(packetID: packetID, subscriptions: subscriptions, properties: properties)
    }

    public func bodySize(version: MQTTProtocolVersion) -> Int {
        var size = 2 + (version.hasProperties ? properties.encodedSize : 0)
        for subscription in subscriptions { size += MQTTSize.string(subscription.filter.raw) + 1 }
        return size
    }

    public func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetID, endianness: .big)
        if version.hasProperties { properties.write(to: &buffer) }
        for subscription in subscriptions {
            buffer.writeMQTTString(subscription.filter.raw)
            buffer.writeInteger(subscription.optionsByte(version: version))
        }
    }
}

/// One topic filter of a SUBSCRIBE with its Subscription Options [MQTT-3.8.3.1].
public struct MQTTSubscription: Sendable, Hashable {
    /// Retain Handling (5.0): when retained messages are sent on subscribe.
    public enum RetainHandling: UInt8, Sendable, Hashable {
        /// Send retained messages at the time of the subscribe.
        case sendOnSubscribe = 0
        /// Send them only if the subscription does not already exist.
        case sendIfNew = 1
        /// Do not send them.
        case doNotSend = 2
    }

    public var filter: MQTTTopicFilter
    /// The maximum QoS the server may send on this subscription.
    public var qos: MQTTQoS
    /// 5.0: do not send messages published by this same client.
    public var noLocal: Bool
    /// 5.0: keep the RETAIN flag of forwarded messages as published.
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(
        filter: MQTTTopicFilter, qos: MQTTQoS, noLocal: Bool = false, retainAsPublished: Bool = false,
        retainHandling: RetainHandling = .sendOnSubscribe
    ) {
        (self.filter, self.qos, self.noLocal, self.retainAsPublished) = (filter, qos, noLocal, retainAsPublished)
        self.retainHandling = retainHandling
    }

    init(filter: MQTTTopicFilter, options: UInt8, version: MQTTProtocolVersion) throws(MQTTCodecError) {
        guard let qos = MQTTQoS(rawValue: options & 0x03) else {
            // 5.0 calls this a Protocol Error (3.8.3.1), 3.1.1 a malformed packet [MQTT-3-8.3-4].
            let message = "subscription to \"\(filter)\" requests QoS 3"
            throw version.hasProperties ? .protocolError(message, spec: "MQTT-3.8.3.1") : .malformed(message, spec: "MQTT-3-8.3-4")
        }
        if version.hasProperties {
            guard options & 0xC0 == 0 else {
                throw .malformed("reserved bits of the subscription options are set", spec: "MQTT-3.8.3-5")
            }
            guard let handling = RetainHandling(rawValue: (options >> 4) & 0x03) else {
                throw .protocolError("Retain Handling is 3", spec: "MQTT-3.8.3.1")
            }
            let noLocal = options & 0x04 != 0
            if noLocal && filter.isShared {
                throw .protocolError("No Local is set on shared subscription \"\(filter)\"", spec: "MQTT-3.8.3-4")
            }
            self.init(
                filter: filter, qos: qos, noLocal: noLocal, retainAsPublished: options & 0x08 != 0,
                retainHandling: handling)
        } else {
            guard options & 0xFC == 0 else {
                throw .malformed("reserved bits of the requested QoS byte are set", spec: "MQTT-3.8.3-4")
            }
            self.init(filter: filter, qos: qos)
        }
    }

    func optionsByte(version: MQTTProtocolVersion) -> UInt8 {
        var byte = qos.rawValue
        guard version.hasProperties else { return byte }
        if noLocal { byte |= 0x04 }
        if retainAsPublished { byte |= 0x08 }
        byte |= retainHandling.rawValue << 4
        return byte
    }
}
