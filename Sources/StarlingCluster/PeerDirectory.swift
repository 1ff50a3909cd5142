import MQTTCodec
import NIOCore
import StarlingCore

/// How session-directory entries and the copies of a message for stored sessions travel on a
/// node link (see `PeerMessages`).
enum PeerDirectory {
    /// A PUBLISH (QoS 1, acknowledged once applied) of changed entries of the sender's sessions.
    static let changed = "$starling/sessions"
    /// The sender's full set of stored sessions, when its link comes up.
    static let full = "$starling/sessions/full"
    /// The user property of one copy for a stored session.
    static let delivery = "$starling/delivery"

    /// Entries as a payload: per entry the client id, 0 (ended) or 1, then the owner's claim
    /// epoch (eight bytes) and its subscriptions (filter, options byte as in SUBSCRIBE, a
    /// four-byte identifier, 0 for none).
    static func encode(_ entries: [SessionDirectoryEntry]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for entry in entries {
            buffer.writeMQTTString(entry.clientID)
            guard let subscriptions = entry.subscriptions else {
                buffer.writeInteger(UInt8(0))
                continue
            }
            buffer.writeInteger(UInt8(1))
            buffer.writeInteger(entry.epoch)
            buffer.writeInteger(UInt16(subscriptions.count))
            for s in subscriptions {
                buffer.writeMQTTString(s.filter.raw)
                var options = s.qos.rawValue
                if s.noLocal { options |= 0x04 }
                if s.retainAsPublished { options |= 0x08 }
                options |= s.retainHandling.rawValue << 4
                buffer.writeInteger(options)
                buffer.writeInteger(UInt32(s.identifier ?? 0))
            }
        }
        return buffer
    }

    static func decode(_ payload: ByteBuffer, owner: String) throws -> [SessionDirectoryEntry] {
        var buffer = payload
        var entries: [SessionDirectoryEntry] = []
        while buffer.readableBytes > 0 {
            let clientID = try buffer.readMQTTString("client id")
            guard try buffer.readMQTTByte("present") == 1 else {
                entries.append(SessionDirectoryEntry(clientID: clientID, owner: owner, subscriptions: nil))
                continue
            }
            guard let epoch = buffer.readInteger(as: Int64.self) else { throw MQTTCodecError.malformed("short directory entry") }
            var subscriptions: [Subscription] = []
            for _ in 0..<(try buffer.readMQTTUInt16("count")) {
                let filter = try MQTTTopicFilter(try buffer.readMQTTString("filter"))
                let options = try buffer.readMQTTByte("options")
                guard let identifier = buffer.readInteger(as: UInt32.self) else { throw MQTTCodecError.malformed("short directory entry") }
                let request = MQTTSubscription(
                    filter: filter, qos: MQTTQoS(rawValue: options & 0x03) ?? .atMostOnce,
                    noLocal: options & 0x04 != 0, retainAsPublished: options & 0x08 != 0,
                    retainHandling: .init(rawValue: (options >> 4) & 0x03) ?? .sendOnSubscribe)
                subscriptions.append(Subscription(request, identifier: identifier == 0 ? nil : Int(identifier)))
            }
            entries.append(SessionDirectoryEntry(clientID: clientID, owner: owner, subscriptions: subscriptions, epoch: epoch))
        }
        return entries
    }

    /// One copy as a user property value: the client id's length in bytes, ':', the client id,
    /// then `|sequence|message id|qos|retain|identifiers` (empty fields for none).
    static func encode(_ d: RemoteDelivery) -> String {
        let ids = d.subscriptionIdentifiers.map(String.init).joined(separator: ",")
        return
            "\(d.clientID.utf8.count):\(d.clientID)|\(d.sequence.map(String.init) ?? "")|\(d.messageID.map(String.init) ?? "")|\(d.qos.rawValue)|\(d.retain ? 1 : 0)|\(ids)"
    }

    static func decodeDelivery(_ text: String) -> RemoteDelivery? {
        let bytes = Array(text.utf8)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), let length = Int(String(decoding: bytes[..<colon], as: UTF8.self)),
            colon + 1 + length <= bytes.count
        else { return nil }
        let clientID = String(decoding: bytes[(colon + 1)..<(colon + 1 + length)], as: UTF8.self)
        let fields = String(decoding: bytes[(colon + 1 + length)...], as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 6, let qosRaw = UInt8(fields[3]), let qos = MQTTQoS(rawValue: qosRaw) else { return nil }
        return RemoteDelivery(
            clientID: clientID, sequence: Int64(fields[1]), messageID: Int64(fields[2]), qos: qos,
            retain: fields[4] == "1", subscriptionIdentifiers: fields[5].split(separator: ",").compactMap { Int($0) })
    }
}
