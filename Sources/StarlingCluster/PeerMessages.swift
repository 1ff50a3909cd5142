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

    static func publish(_ message: Message, groups: [ShareGroupKey], retainedChange: Bool, now: NIODeadline) -> MQTTPublish {
        var properties = message.properties
        if let remaining = message.remainingExpiry(at: now) { properties.append(.messageExpiryInterval(remaining)) }
        properties.append(.userProperty(publisher, message.publisher))
        properties.append(.userProperty(qos, String(message.qos.rawValue)))
        for group in groups { properties.append(.userProperty(Self.group, "\(group.name)/\(group.filter)")) }
        if retainedChange { properties.append(.userProperty(retained, "1")) }
        return MQTTPublish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: message.retain, properties: properties)
    }

    /// The message, the groups assigned to this node, and whether it is a retained change.
    static func message(from publish: MQTTPublish, now: NIODeadline) -> (message: Message, groups: [ShareGroupKey], retainedChange: Bool) {
        var properties = publish.properties
        var publisherID = ""
        var messageQoS = MQTTQoS.atMostOnce
        var groups: [ShareGroupKey] = []
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
            default: break
            }
        }
        // The message's own user properties stay, in order; ours go.
        let kept = properties.userProperties.filter { !$0.0.hasPrefix("$starling/") }
        properties.removeAll(.userProperty)
        for (key, value) in kept { properties.append(.userProperty(key, value)) }
        let message = Message(topic: publish.topic, payload: publish.payload, qos: messageQoS, retain: publish.retain,
                              wireProperties: properties, publisher: publisherID, now: now)
        return (message, groups, retainedChange)
    }
}
