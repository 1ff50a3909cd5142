/// A batch of operations folded to its net effect, so an adapter can write each table with one
/// statement (PostgreSQL `unnest`, COPY) instead of one per operation, and never touches a key
/// twice in one statement (which `INSERT … ON CONFLICT DO UPDATE` refuses).
///
/// Folding keeps the meaning of the operations applied in order:
/// - `deleteSession(c)` erases every earlier operation on `c`'s subscriptions, deliveries and
///   inbound QoS 2 entries, and the adapter deletes `c` (cascading) before any upsert;
/// - for every other key the last operation wins; an update folds into an earlier save of the
///   same delivery.
public struct StoreBatch: Sendable {
    public enum Change<Value: Sendable>: Sendable {
        case upsert(Value)
        case delete
    }

    public struct DeliveryKey: Hashable, Sendable {
        public var clientID: String
        public var sequence: Int64
    }

    public enum DeliveryChange: Sendable {
        case upsert(StoredDelivery)
        case update(state: StoredDeliveryState, packetID: UInt16?)
        case delete
    }

    /// Sessions to delete (with everything they own) before anything else is written.
    public private(set) var resetSessions: [String] = []
    public private(set) var sessions: [String: StoredSession] = [:]
    public private(set) var messages: [Int64: StoredMessage] = [:]
    public private(set) var subscriptions: [SubscriptionKey: Change<StoredSubscription>] = [:]
    public private(set) var deliveries: [DeliveryKey: DeliveryChange] = [:]
    public private(set) var inboundQoS2: [InboundKey: Bool] = [:]  // true = add, false = remove
    public private(set) var retained: [String: StoredMessage] = [:]  // empty payload = delete
    /// Published messages to ingest, in arrival order (not folded: each is a row or a re-send).
    public private(set) var ingest: [IngestRecord] = []
    /// The payloads a fenced group (`StoreOperation.fenced`: what one PUBLISH caused) saved with
    /// its one ingest record, by the record's index in `ingest`: every copy it routed — one per
    /// stored session of the node, one for the other nodes' — is left out with the record when a
    /// replay finds it stored elsewhere (`PostgresWrites.takenElsewhere`).
    public private(set) var routedWith: [Int: [Int64]] = [:]
    /// Connection wills by connection token.
    public private(set) var connectionWills: [Int64: Change<StoredConnectionWill>] = [:]
    /// Spool replay progress by spool id (`StoreOperation.markReplayed`).
    public private(set) var replayMarks: [String: Int64] = [:]

    public struct SubscriptionKey: Hashable, Sendable {
        public var clientID: String
        public var filter: String
    }

    /// A client's unreleased QoS 2 packet id (`inbound_qos2`).
    public struct InboundKey: Hashable, Sendable {
        public var clientID: String
        public var packetID: UInt16

        public init(clientID: String, packetID: UInt16) {
            (self.clientID, self.packetID) = (clientID, packetID)
        }
    }

    public var isEmpty: Bool {
        resetSessions.isEmpty && sessions.isEmpty && messages.isEmpty && subscriptions.isEmpty && deliveries.isEmpty
            && inboundQoS2.isEmpty && retained.isEmpty && ingest.isEmpty && connectionWills.isEmpty && replayMarks.isEmpty
    }

    /// The net effect of `operations`, leaving out what a fence in `stale` guards.
    public init(_ operations: [StoreOperation], dropping stale: Set<SessionFence> = []) {
        var reset: Set<String> = []
        for operation in operations {
            guard case .fenced(let fence, let guarded) = operation else {
                fold(operation, reset: &reset)
                continue
            }
            guard !stale.contains(fence) else { continue }
            let first = ingest.count
            for inner in guarded { fold(inner, reset: &reset) }
            guard ingest.count == first + 1 else { continue }
            let saved = guarded.compactMap { if case .saveMessage(let message) = $0 { message.id } else { nil } }
            if !saved.isEmpty { routedWith[first] = saved }
        }
    }

    private mutating func fold(_ operation: StoreOperation, reset: inout Set<String>) {
        switch operation {
        case .saveSession(let session):
            sessions[session.clientID] = session
        case .deleteSession(let clientID):
            sessions[clientID] = nil
            subscriptions = subscriptions.filter { $0.key.clientID != clientID }
            deliveries = deliveries.filter { $0.key.clientID != clientID }
            inboundQoS2 = inboundQoS2.filter { $0.key.clientID != clientID }
            if reset.insert(clientID).inserted { resetSessions.append(clientID) }
        case .saveSubscription(let stored):
            subscriptions[SubscriptionKey(clientID: stored.clientID, filter: stored.subscription.filter.raw)] = .upsert(stored)
        case .deleteSubscription(let clientID, let filter):
            subscriptions[SubscriptionKey(clientID: clientID, filter: filter)] = .delete
        case .saveMessage(let message):
            messages[message.id] = message
        case .saveDelivery(let delivery):
            deliveries[DeliveryKey(clientID: delivery.clientID, sequence: delivery.sequence)] = .upsert(delivery)
        case .updateDelivery(let clientID, let sequence, let state, let packetID):
            let key = DeliveryKey(clientID: clientID, sequence: sequence)
            switch deliveries[key] {
            case .upsert(var delivery):
                delivery.state = state
                delivery.packetID = packetID
                deliveries[key] = .upsert(delivery)
            case .delete:
                break
            case .update, nil:
                deliveries[key] = .update(state: state, packetID: packetID)
            }
        case .deleteDelivery(let clientID, let sequence):
            deliveries[DeliveryKey(clientID: clientID, sequence: sequence)] = .delete
        case .addInboundQoS2(let clientID, let packetID):
            inboundQoS2[InboundKey(clientID: clientID, packetID: packetID)] = true
        case .removeInboundQoS2(let clientID, let packetID):
            inboundQoS2[InboundKey(clientID: clientID, packetID: packetID)] = false
        case .setRetained(let message):
            retained[message.topic] = message
        case .ingest(let record):
            ingest.append(record)
        case .saveConnectionWill(let will):
            connectionWills[will.token] = .upsert(will)
        case .deleteConnectionWill(let token):
            connectionWills[token] = .delete
        case .markReplayed(let spool, let through):
            replayMarks[spool] = max(replayMarks[spool] ?? 0, through)
        case .fenced(_, let guarded):
            for inner in guarded { fold(inner, reset: &reset) }
        }
    }
}
