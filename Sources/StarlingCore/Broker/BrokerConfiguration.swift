public import MQTTCodec

/// The broker core's settings. Every default is documented in `starling generate-config`.
public struct BrokerConfiguration: Sendable, Equatable {
    /// What to do when a session's queue is full and it holds no QoS 0 message to drop.
    public enum QueueFullPolicy: String, Sendable, CaseIterable {
        /// Refuse the new message for that session (counted as dropped).
        case dropNew = "drop_new"
        /// Drop the oldest queued message to make room (counted as dropped).
        case dropOldest = "drop_oldest"
    }

    /// How one member of a shared subscription group is chosen for each message [MQTT-4.8.2].
    public enum SharedStrategy: String, Sendable, CaseIterable {
        case random
        case roundRobin = "round_robin"
        case sticky
        case hashClientID = "hash_clientid"
        case hashTopic = "hash_topic"
        /// In a cluster, a member on the node that received the message when it has one (no
        /// hop), else a node with members at random; within a node, a member at random.
        case local
    }

    /// Largest keep alive accepted, in seconds; 0 = no maximum. A 5.0 client asking for more
    /// (or for 0) is told this value as Server Keep Alive; a 3.x client is refused (CONNACK 0x02),
    /// as 3.x cannot be told.
    public var maxKeepAlive: UInt16 = 0
    /// Seconds a new connection has to send CONNECT.
    public var connectTimeout: Double = 10
    /// Largest packet accepted, fixed header included (also announced as Maximum Packet Size).
    public var maxPacketSize: Int = 1 << 20
    /// Most simultaneous client connections.
    public var maxConnections: Int = 100_000
    /// Outbound QoS 1 and 2 messages in flight per session (further capped by the client's
    /// Receive Maximum).
    public var maxInflight: Int = 32
    /// Inbound QoS 2 messages a client may have awaiting PUBREL (announced as Receive Maximum).
    public var receiveMaximum: UInt16 = 256
    /// Messages queued per session beyond the in-flight window.
    public var maxQueuedMessages: Int = 10_000
    public var queueFullPolicy: QueueFullPolicy = .dropNew
    /// Topic Alias Maximum announced to 5.0 clients (aliases they may use towards us).
    public var topicAliasMaximum: UInt16 = 64
    /// Most levels in a topic name or filter.
    public var maxTopicLevels: Int = 32
    /// Longest topic name or filter, in bytes.
    public var maxTopicLength: Int = 1024
    /// Most subscriptions per client.
    public var maxSubscriptionsPerClient: Int = 1_000
    /// Longest client identifier accepted, in bytes.
    public var maxClientIDLength: Int = 256
    /// Highest QoS accepted from publishers (announced as Maximum QoS when below 2).
    public var maximumQoS: MQTTQoS = .exactlyOnce
    /// Whether RETAIN is honoured (announced as Retain Available).
    public var retainAvailable = true
    public var sharedStrategy: SharedStrategy = .roundRobin
    /// Seconds between `$SYS/broker/...` updates; 0 turns them off.
    public var sysInterval: Double = 10
    /// Largest Session Expiry Interval granted, in seconds (0xFFFFFFFF = never expire).
    public var maxSessionExpiry: UInt32 = .max
    /// Check that payloads marked UTF-8 (Payload Format Indicator 1) are valid UTF-8 (0x99).
    public var validateUTF8Payloads = true
    /// Whether a 3.x client may send an empty client id (with Clean Session 1) and get one assigned.
    public var allowEmptyClientID = true

    /// The ingest bridge: which published messages become rows of `messages`.
    public var ingest = IngestConfiguration()

    public init() {}
}

/// The ingest bridge's settings (docs/architecture.md, "The ingest bridge").
public struct IngestConfiguration: Sendable, Equatable {
    public var enabled = true
    /// Topic filters whose messages are stored; `$SYS` topics never are.
    public var topics: [MQTTTopicFilter] = [try! MQTTTopicFilter("#")]
    /// How a re-sent QoS 1 message is recognised (docs/architecture.md, "The ingest bridge").
    public enum Dedup: String, Sendable, CaseIterable {
        /// A repeat of the last message with its packet id is a re-send only with DUP = 1.
        case dupFlag = "dup_flag"
        /// Any identical repeat of a packet id is a re-send, DUP or not.
        case content
    }

    public var dedup = Dedup.dupFlag
    /// Delete rows older than this many seconds; nil keeps them.
    public var retentionSeconds: Int64?
    /// This node's id, stored with each row.
    public var nodeID = "starling"

    public init() {}

    /// Whether messages on `topic` are ingested.
    public func covers(_ topic: String) -> Bool {
        enabled && !topic.hasPrefix("$") && topics.contains { $0.matches(topic) }
    }
}

extension BrokerConfiguration {
    /// Describes what makes a topic name or filter exceed the configured limits, if anything.
    func topicProblem(_ topic: String) -> String? {
        if topic.utf8.count > maxTopicLength {
            return "longer than \(maxTopicLength) bytes"
        }
        var levels = 1
        for byte in topic.utf8 where byte == UInt8(ascii: "/") { levels += 1 }
        if levels > maxTopicLevels {
            return "more than \(maxTopicLevels) levels"
        }
        return nil
    }
}
