import MQTTCodec
import NIOCore
import StarlingCore

/// How a message travels on a node link: a PUBLISH (QoS 0 on the link: TCP carries it, the
/// publisher's node has already made it durable where needed) whose properties are the
/// message's, its remaining expiry, and after them user properties of our own, removed on
/// arrival: one header (`$starling`: the message's QoS, flags, and the publisher for No Local
/// and `hash_clientid`), and, when there are any, the shared groups the receiving node is to
/// serve and the copies for its stored sessions. One header string rather than one property per
/// field: the link's cost per message is in parsing and allocating them.
enum PeerMessages {
    static let header = "$starling"
    static let group = "$starling/group"
    /// The topic of the PUBLISH that starts a full route set (after a link comes up).
    static let resetRoutes = "$starling/routes/reset"
    /// The topic of the PUBLISH (QoS 1: acknowledged once done) that tells every peer that a
    /// node claimed a session; the payload is the claim's epoch (8 bytes, big-endian), then the
    /// client id.
    static let sessionClaimed = "$starling/session/claimed"
    /// The topic of the PUBLISH (QoS 0) with which a node tells its peers, every second, how
    /// long ago its last lease renewal started (milliseconds, 8 bytes big-endian; -1: none).
    static let lease = "$starling/lease"

    /// The topic of a PUBLISH whose payload is a batch of plain messages (`appendToBatch`): the
    /// messages a link gathers in one turn of the loop travel as one frame, each in a binary
    /// form without strings to parse beyond its topic and publisher.
    static let batch = "$starling/batch"
    /// The CONNACK user property by which a listener says it reads batches; a dialer sends
    /// them only then (a peer of an earlier version gets one PUBLISH per message).
    static let readsBatches = "batches"

    /// Appends `message` to a batch: flags (QoS in bits 0–1, retain 2, expiry 3), the topic and
    /// the publisher (16-bit lengths), the remaining expiry (32 bits, if any), the properties as
    /// in a PUBLISH (length prefixed) and the payload (32-bit length).
    static func appendToBatch(_ message: Message, now: NIODeadline, to buffer: inout ByteBuffer) {
        let expiry = message.remainingExpiry(at: now)
        var flags = message.qos.rawValue
        if message.retain { flags |= 1 << 2 }
        if expiry != nil { flags |= 1 << 3 }
        buffer.writeInteger(flags)
        buffer.writeInteger(UInt16(message.topic.utf8.count))
        buffer.writeString(message.topic)
        buffer.writeInteger(UInt16(message.publisher.utf8.count))
        buffer.writeString(message.publisher)
        if let expiry { buffer.writeInteger(expiry) }
        message.properties.write(to: &buffer)
        buffer.writeInteger(UInt32(message.payload.readableBytes))
        buffer.writeImmutableBuffer(message.payload)
    }

    struct MalformedBatch: Error, CustomStringConvertible {
        var description: String
    }

    /// The messages of a batch, in order.
    static func messages(inBatch payload: ByteBuffer, now: NIODeadline) throws -> [Message] {
        var input = payload
        var messages: [Message] = []
        while input.readableBytes > 0 {
            guard let flags = input.readInteger(as: UInt8.self), let qos = MQTTQoS(rawValue: flags & 3),
                let topicLength = input.readInteger(as: UInt16.self), let topic = input.readString(length: Int(topicLength)),
                let publisherLength = input.readInteger(as: UInt16.self),
                let publisher = input.readString(length: Int(publisherLength))
            else { throw MalformedBatch(description: "a message of a batch is cut short") }
            var expiresAt: NIODeadline?
            if flags & (1 << 3) != 0 {
                guard let seconds = input.readInteger(as: UInt32.self) else { throw MalformedBatch(description: "no expiry") }
                expiresAt = now + .seconds(Int64(seconds))
            }
            let properties = try MQTTProperties.read(from: &input, context: .publish)
            guard let length = input.readInteger(as: UInt32.self), let body = input.readSlice(length: Int(length)) else {
                throw MalformedBatch(description: "a payload of a batch is cut short")
            }
            messages.append(
                Message(
                    topic: topic, payload: body, qos: qos, retain: flags & (1 << 2) != 0, properties: properties,
                    expiresAt: expiresAt, publisher: publisher))
        }
        return messages
    }

    static func claim(_ clientID: String, epoch: Int64) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(epoch)
        buffer.writeString(clientID)
        return buffer
    }

    static func claim(from payload: ByteBuffer) -> (clientID: String, epoch: Int64)? {
        var payload = payload
        guard let epoch = payload.readInteger(as: Int64.self) else { return nil }
        return (String(buffer: payload), epoch)
    }

    /// Header flags after the QoS digit: plain delivery, retained change.
    private static let plainFlag: Character = "p"
    private static let retainedFlag: Character = "r"

    static func publish(
        _ message: Message, plain isPlain: Bool = true, groups: [ShareGroupKey], deliveries: [RemoteDelivery] = [],
        retainedChange: Bool, now: NIODeadline
    ) -> MQTTPublish {
        var properties = message.properties
        if let remaining = message.remainingExpiry(at: now) { properties.append(.messageExpiryInterval(remaining)) }
        // "<qos><flags>:<publisher>", e.g. "1p:sensor-17".
        var value = String(message.qos.rawValue)
        if isPlain { value.append(plainFlag) }
        if retainedChange { value.append(retainedFlag) }
        value += ":" + message.publisher
        properties.append(.userProperty(header, value))
        for group in groups { properties.append(.userProperty(Self.group, "\(group.name)/\(group.filter)")) }
        for delivery in deliveries { properties.append(.userProperty(PeerDirectory.delivery, PeerDirectory.encode(delivery))) }
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
        var received = Received(
            message: Message(
                topic: publish.topic, payload: publish.payload, qos: .atMostOnce, retain: publish.retain,
                publisher: ""))
        var kept = MQTTProperties()
        var ownProperties = false
        for property in publish.properties {
            guard case .userProperty(let key, let value) = property, key.hasPrefix(header) else {
                kept.append(property)
                continue
            }
            ownProperties = true
            switch key {
            case header:
                guard let colon = value.firstIndex(of: ":") else { continue }
                let flags = value[..<colon]
                received.message.publisher = String(value[value.index(after: colon)...])
                received.message.qos = flags.first?.wholeNumberValue.flatMap { MQTTQoS(rawValue: UInt8($0)) } ?? .atMostOnce
                received.plain = flags.contains(plainFlag)
                received.retainedChange = flags.contains(retainedFlag)
            case group:
                if let slash = value.firstIndex(of: "/") {
                    received.groups.append(
                        ShareGroupKey(name: String(value[..<slash]), filter: String(value[value.index(after: slash)...])))
                }
            case PeerDirectory.delivery:
                if let delivery = PeerDirectory.decodeDelivery(value) { received.deliveries.append(delivery) }
            default:
                break
            }
        }
        // The message's own properties stay, in order; ours go; expiry becomes a deadline.
        let message = received.message
        received.message = Message(
            topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain,
            wireProperties: ownProperties ? kept : publish.properties, publisher: message.publisher, now: now)
        return received
    }

    /// The user property of a claim's answer that lists the session's ended deliveries.
    static let endedProperty = "ended"

    /// A claim's answer: the deliveries of the session that ended on the answering node lately
    /// (`Broker.endedDeliveries`), as decimal sequences separated by commas.
    static func ended(_ sequences: [Int64]) -> MQTTProperties {
        guard !sequences.isEmpty else { return [] }
        return [.userProperty(endedProperty, sequences.map(String.init).joined(separator: ","))]
    }

    static func ended(from properties: MQTTProperties) -> Set<Int64> {
        var sequences: Set<Int64> = []
        for case .userProperty(let key, let value) in properties where key == endedProperty {
            for part in value.split(separator: ",") { if let sequence = Int64(part) { sequences.insert(sequence) } }
        }
        return sequences
    }
}
