import MQTTCodec
public import NIOCore

/// Retained messages by topic [MQTT-3.3.1-5]: one per topic, replaced by the next retained
/// PUBLISH, removed by an empty payload [MQTT-3.3.1-10].
public struct RetainedStore: Sendable {
    private var messages: [String: Message] = [:]

    public init() {}

    public var count: Int { messages.count }

    public func contains(topic: String) -> Bool { messages[topic] != nil }

    /// Stores, replaces or (with an empty payload) removes the retained message of a topic.
    public mutating func set(_ message: Message) {
        if message.payload.readableBytes == 0 {
            messages[message.topic] = nil  // [MQTT-3.3.1-10][MQTT-3.3.1-11]
        } else {
            messages[message.topic] = message
        }
    }

    /// The retained messages matching `filter`, expired ones removed [MQTT-3.3.2-5].
    public mutating func matching(_ filter: String, now: NIODeadline) -> [Message] {
        var found: [Message] = []
        if !filter.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") }) {
            if let message = messages[filter] { found.append(message) }
        } else {
            for (topic, message) in messages where MQTTTopic.matches(filter: filter, topic: topic) {
                found.append(message)
            }
        }
        let live = found.filter { !$0.isExpired(at: now) }
        if live.count != found.count {
            for message in found where message.isExpired(at: now) { messages[message.topic] = nil }
        }
        return live.sorted { $0.topic < $1.topic }
    }

    /// Every retained message (for persistence and tests).
    public var all: [Message] { Array(messages.values) }
}
