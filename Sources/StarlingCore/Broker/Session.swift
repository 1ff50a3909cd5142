public import MQTTCodec
import DequeModule
import NIOCore

/// A subscription as a session holds it.
public struct Subscription: Sendable, Equatable {
    public var filter: MQTTTopicFilter
    public var qos: MQTTQoS
    public var noLocal: Bool
    public var retainAsPublished: Bool
    public var retainHandling: MQTTSubscription.RetainHandling
    public var identifier: Int?

    public init(_ request: MQTTSubscription, identifier: Int?) {
        filter = request.filter
        qos = request.qos
        noLocal = request.noLocal
        retainAsPublished = request.retainAsPublished
        retainHandling = request.retainHandling
        self.identifier = identifier
    }
}

/// A message waiting for, or in, the outbound flow of one session.
struct OutboundMessage {
    /// The stored message a plain QoS 2 delivery carries, if any: a session gets it once
    /// (`Session.givenQoS2`). Retained messages sent on a subscription are not counted (a new
    /// subscription gets them again [MQTT-3.3.1-9]).
    var onceKey: Int64? {
        guard qos == .exactlyOnce, shareGroup == nil, !retain else { return nil }
        return message.storeID
    }

    var message: Message
    /// The QoS it is delivered with: min(published, subscribed) [MQTT-3.8.4-8].
    var qos: MQTTQoS
    var retain: Bool
    var subscriptionIdentifiers: [Int]
    /// The shared group it came through, so a QoS 1 message can go to another member if this
    /// session ends before acknowledging it [MQTT-4.8.2-5].
    var shareGroup: ShareGroupKey?
    /// The delivery's sequence in the store, when the session is stored.
    var sequence: Int64?
    /// Its row is known to be committed (restored from the store, or written by the node that
    /// received the message): it may be sent whatever `Session.durableSequence` says.
    var committed = false
}

/// The state of an outbound QoS 1 or 2 message that has been sent.
struct InflightMessage {
    enum Stage {
        /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
        case published
        /// PUBREC received, PUBREL sent, waiting for PUBCOMP.
        case released
    }
    var outbound: OutboundMessage
    var stage: Stage
    /// The PUBLISH went out at least once (here, or from the store's "sent" state): sent again,
    /// it carries DUP [MQTT-3.3.1-1].
    var sent = true
}

public typealias ShareGroupKey = SubscriptionIndex<String, Subscription>.ShareGroup

/// A session: the state that outlives a network connection when its expiry allows
/// [MQTT-4.1]. Confined to the broker's event loop.
public final class Session {
    public let clientID: String
    public internal(set) var version: MQTTProtocolVersion
    /// Seconds the session outlives its connection; 0 = ends with it, `.max` = never expires.
    public internal(set) var expiryInterval: UInt32
    public internal(set) var subscriptions: [String: Subscription] = [:]
    var connection: Connection?
    /// When the session expires while disconnected.
    var expiresAt: NIODeadline?

    // Outbound QoS 1/2 flow [MQTT-4.3].
    var inflight: [UInt16: InflightMessage] = [:]
    /// Packet ids in the order their messages were first sent, for resending in order
    /// [MQTT-4.6.0-1].
    var inflightOrder: Deque<UInt16> = []
    var queue = OutboundQueue()
    var nextPacketID: UInt16 = 1

    /// Inbound QoS 2 packet ids for which PUBREC was sent and PUBREL is awaited
    /// [MQTT-4.3.3-9]: a re-sent PUBLISH with one of these ids is not delivered again.
    var inboundQoS2: Set<UInt16> = []

    /// The Will Message of the current or last connection, and when to publish it.
    /// Whether the session has a row in the store; only sessions with an expiry interval above
    /// 0 are stored [MQTT-4.1].
    var isStored = false
    /// In a cluster, the epoch of the claim by which this node holds the session.
    var claimEpoch: Int64 = 0
    var isPersistent: Bool { expiryInterval > 0 }
    /// The next delivery sequence number (store order of the outbound queue).
    var nextSequence: Int64 = 1
    /// Stored deliveries up to this sequence are committed and may be sent.
    var durableSequence: Int64 = 0
    /// Delivery rows read from the store (a pickup, a claim, a start-up), and when: a peer's
    /// copy of one of them that arrives later is not delivered again. Peers hold copies for a
    /// link that is down and send them when it comes up, after the rows may have been read.
    var readFromStore: [Int64: NIODeadline] = [:]
    /// The stored messages this session was given at QoS 2 through its plain subscriptions
    /// lately (queued or sent), by message id: a copy of one of them that comes from another
    /// row or a peer is a second delivery of the same message, never a new one (`PeerRouting`).
    var givenQoS2: [Int64: NIODeadline] = [:]
    /// Deliveries that ended while a pickup was reading the store: their rows may still be
    /// there, their deletes not yet committed.
    var endedDuringPickup: Set<Int64> = []
    /// The sequences of the stored deliveries this session holds, queued or in flight.
    var sequencesHeld: Set<Int64> {
        Set(queue.compactMap(\.sequence)).union(inflight.values.compactMap(\.outbound.sequence))
    }
    /// The latest deliveries that ended: a peer's copy of one that arrives late (a link that
    /// was slow, a claim that crossed it) is not delivered again.
    var ended = RecentSequences(capacity: 1024)
    /// Packet ids whose PUBREL is withheld: their "released" state went to this node's spool,
    /// not the shared store (`OutboundFlow.releaseWithheld`).
    var withheldReleases: [UInt16] = []
    /// Packet ids of QoS 2 PUBLISH packets not sent yet: their "sent with this packet id" state
    /// went to this node's spool, not the shared store (`OutboundFlow.startInflight`).
    var withheldPublishes: [UInt16] = []

    var will: MQTTWill?
    /// The user name of the current or last connection, for authorizing deliveries.
    var username: String?
    var willDueAt: NIODeadline?

    init(clientID: String, version: MQTTProtocolVersion, expiryInterval: UInt32) {
        (self.clientID, self.version, self.expiryInterval) = (clientID, version, expiryInterval)
    }

    public var isConnected: Bool { connection != nil }
    public var inflightCount: Int { inflight.count }
    public var queuedCount: Int { queue.count }

    /// The next free packet identifier [MQTT-2.2.1-3]: non-zero and not in flight.
    func allocatePacketID() -> UInt16? {
        guard inflight.count < Int(UInt16.max) else { return nil }
        while true {
            let id = nextPacketID
            nextPacketID = nextPacketID == .max ? 1 : nextPacketID + 1
            if inflight[id] == nil { return id }
        }
    }
}

/// A session's outbound queue: a deque that also counts its QoS 0 messages, so the queue-full
/// policy ("drop the oldest QoS 0 first") costs nothing when there are none.
struct OutboundQueue: Sequence {
    private var items: Deque<OutboundMessage> = []
    private(set) var qos0Count = 0

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var first: OutboundMessage? { items.first }

    mutating func append(_ message: OutboundMessage) {
        if message.qos == .atMostOnce { qos0Count += 1 }
        items.append(message)
    }

    @discardableResult
    mutating func removeFirst() -> OutboundMessage {
        let message = items.removeFirst()
        if message.qos == .atMostOnce { qos0Count -= 1 }
        return message
    }

    /// Removes and returns the oldest QoS 0 message, if any.
    mutating func removeOldestQoS0() -> OutboundMessage? {
        guard qos0Count > 0, let index = items.firstIndex(where: { $0.qos == .atMostOnce }) else { return nil }
        qos0Count -= 1
        return items.remove(at: index)
    }

    mutating func removeAll(where shouldRemove: (OutboundMessage) -> Bool) {
        items.removeAll(where: shouldRemove)
        qos0Count = items.count { $0.qos == .atMostOnce }
    }

    mutating func removeAll() {
        items.removeAll()
        qos0Count = 0
    }

    func makeIterator() -> Deque<OutboundMessage>.Iterator { items.makeIterator() }
}

/// The last `capacity` sequences inserted, for membership tests.
struct RecentSequences {
    let capacity: Int
    private var members: Set<Int64> = []
    private var order = Deque<Int64>()

    init(capacity: Int) {
        self.capacity = capacity
    }

    func contains(_ sequence: Int64) -> Bool { members.contains(sequence) }
    var isEmpty: Bool { order.isEmpty }
    /// Oldest first.
    var all: [Int64] { Array(order) }

    mutating func insert(_ sequence: Int64) {
        guard members.insert(sequence).inserted else { return }
        order.append(sequence)
        if order.count > capacity, let oldest = order.popFirst() { members.remove(oldest) }
    }
}
