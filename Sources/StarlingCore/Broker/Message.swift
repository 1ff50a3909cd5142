public import MQTTCodec
public import NIOCore

/// An application message as the broker holds it between publisher and subscribers.
public struct Message: Sendable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: MQTTQoS
    public var retain: Bool
    /// The PUBLISH properties forwarded unchanged [MQTT-3.3.2-17..20]: payload format, content
    /// type, response topic, correlation data, user properties. Message Expiry Interval is
    /// kept as `expiresAt` and rewritten when forwarded; Topic Alias and Subscription
    /// Identifiers are per hop and never stored.
    public var properties: MQTTProperties
    /// When the Message Expiry Interval runs out; nil = never.
    public var expiresAt: NIODeadline?
    /// The client id of the publisher, for No Local and `hash_clientid`.
    public var publisher: String
    /// The id of its stored payload, once a stored session has queued it.
    public var storeID: Int64?

    public init(
        topic: String, payload: ByteBuffer, qos: MQTTQoS, retain: Bool, properties: MQTTProperties = [],
        expiresAt: NIODeadline? = nil, publisher: String
    ) {
        (self.topic, self.payload, self.qos, self.retain, self.properties) = (topic, payload, qos, retain, properties)
        (self.expiresAt, self.publisher) = (expiresAt, publisher)
    }

    public func isExpired(at now: NIODeadline) -> Bool {
        if let expiresAt { return expiresAt <= now }
        return false
    }

    /// The Message Expiry Interval to send at `now`, the time it waited deducted [MQTT-3.3.2-6].
    public func remainingExpiry(at now: NIODeadline) -> UInt32? {
        guard let expiresAt else { return nil }
        let nanos = (expiresAt - now).nanoseconds
        return UInt32(clamping: max(1, (nanos + 999_999_999) / 1_000_000_000))
    }

    /// Builds the message of an incoming PUBLISH whose topic has been resolved.
    public init(publish: MQTTPublish, topic: String, publisher: String, now: NIODeadline) {
        self.init(
            topic: topic, payload: publish.payload, qos: publish.qos, retain: publish.retain,
            wireProperties: publish.properties, publisher: publisher, now: now)
    }

    /// Builds a message from properties as they arrived (in a PUBLISH or a will): the Message
    /// Expiry Interval becomes `expiresAt`, and what is per hop or will-only is dropped.
    public init(
        topic: String, payload: ByteBuffer, qos: MQTTQoS, retain: Bool, wireProperties: MQTTProperties,
        publisher: String, now: NIODeadline
    ) {
        var properties = wireProperties
        let expiresAt = properties.messageExpiryInterval.map { now + .seconds(Int64($0)) }
        for identifier in [MQTTProperty.Identifier.messageExpiryInterval, .topicAlias, .subscriptionIdentifier, .willDelayInterval] {
            properties.removeAll(identifier)
        }
        self.init(
            topic: topic, payload: payload, qos: qos, retain: retain, properties: properties,
            expiresAt: expiresAt, publisher: publisher)
    }
}
