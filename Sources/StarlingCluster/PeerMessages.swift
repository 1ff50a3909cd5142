import MQTTCodec
import NIOCore
import StarlingCore

/// How a message travels on a node link: a PUBLISH (QoS 0 on the link: TCP carries it, the
/// publisher's node has already made it durable) whose properties are the message's, its
/// remaining expiry, and a few user properties of our own after the message's, removed on
/// arrival: the publisher (No Local, `hash_clientid`), the message's QoS, the shared groups
/// the receiving node is to serve, and whether it is a retained-message change.
enum PeerMessages {
    static let publisher = "$starling/publisher"
    static let qos = "$starling/qos"
    static let group = "$starling/group"
    static let retained = "$starling/retained"
    /// The topic of the PUBLISH that starts a full route set (after a link comes up).
    static let resetRoutes = "$starling/routes/reset"
    /// The topic of the PUBLISH (QoS 1: acknowledged once done) that tells the node holding a
    /// session that another node claimed it; the payload is the client id.
    static let sessionClaimed = "$starling/session/claimed"

    static let plain = "$starling/plain"

    static func publish(_ message: Message, plain isPlain: Bool = true, groups: [ShareGroupKey], deliveries: [RemoteDelivery] = [],
                        retainedChange: Bool, now: NIODeadline) -> MQTTPublish {
        var properties = message.properties
        if let remaining = message.remainingExpiry(at: now) { properties.append(.messageExpiryInterval(remaining)) }
        properties.append(.userProperty(publisher, message.publisher))
        properties.append(.userProperty(qos, String(message.qos.rawValue)))
        if isPlain { properties.append(.userProperty(plain, "1")) }
        for group in groups { properties.append(.userProperty(Self.group, "\(group.name)/\(group.filter)")) }
        for delivery in deliveries { properties.append(.userProperty(PeerDirectory.delivery, PeerDirectory.encode(delivery))) }
        if retainedChange { properties.append(.userProperty(retained, "1")) }
        return MQTTPublish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: message.retain, properties: properties)
    }

    struct Received {
        var message: Message
        var plain = false
        var groups: [ShareGroupKey] = []
        var deliveries: [RemoteDelivery] = []
        var retainedChange = false
    }

    /// The message and what the sending node asks of this one.
    static func message(from publish: MQTTPublish, now: NIODeadline) -> Received {
        var properties = publish.properties
        var publisherID = ""
        var messageQoS = MQTTQoS.atMostOnce
        var groups: [ShareGroupKey] = []
        var deliveries: [RemoteDelivery] = []
        var isPlain = false
        var retainedChange = false
        let ours = properties.userProperties.filter { $0.0.hasPrefix("$starling/") }
        for (key, value) in ours {
            switch key {
            case publisher: publisherID = value
            case qos: messageQoS = UInt8(value).flatMap(MQTTQoS.init(rawValue:)) ?? .atMostOnce
            case group:
                if let slash = value.firstIndex(of: "/") {
                    groups.append(ShareGroupKey(name: String(value[..<slash]), filter: String(value[value.index(after: slash)...])))
                }
            case retained: retainedChange = true
            case plain: isPlain = true
            case PeerDirectory.delivery: if let delivery = PeerDirectory.decodeDelivery(value) { deliveries.append(delivery) }
            default: break
            }
        }
        // The message's own user properties stay, in order; ours go.
        let kept = properties.userProperties.filter { !$0.0.hasPrefix("$starling/") }
        properties.removeAll(.userProperty)
        for (key, value) in kept { properties.append(.userProperty(key, value)) }
        let message = Message(topic: publish.topic, payload: publish.payload, qos: messageQoS, retain: publish.retain,
                              wireProperties: properties, publisher: publisherID, now: now)
        return Received(message: message, plain: isPlain, groups: groups, deliveries: deliveries, retainedChange: retainedChange)
    }
}
