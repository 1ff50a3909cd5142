public import MQTTCodec
public import NIOCore

/// Times in the store are wall-clock milliseconds since 1970, so they survive restarts.
public typealias StoreTime = Int64

/// A persistent session's row [MQTT-4.1]: sessions with an expiry interval above 0.
public struct StoredSession: Sendable, Equatable {
    public var clientID: String
    public var version: MQTTProtocolVersion
    /// Seconds; `UInt32.max` = never expires.
    public var expiryInterval: UInt32
    /// When it expires while disconnected; nil while connected or never.
    public var expiresAt: StoreTime?
    /// True while a connection is attached: a session found connected at start-up lost its
    /// connection in a crash, so its will is due.
    public var connected: Bool
    public var username: String?
    public var will: MQTTWill?
    /// When a delayed will is due (disconnected sessions).
    public var willDueAt: StoreTime?
    /// In a cluster, the epoch of the claim by which the writing node holds the session
    /// (migration 0006): the store applies a write only if no later claim took the row. 0 alone.
    public var epoch: Int64 = 0

    public init(
        clientID: String, version: MQTTProtocolVersion, expiryInterval: UInt32, expiresAt: StoreTime? = nil,
        connected: Bool, username: String? = nil, will: MQTTWill? = nil, willDueAt: StoreTime? = nil
    ) {
        (self.clientID, self.version, self.expiryInterval, self.expiresAt) = (clientID, version, expiryInterval, expiresAt)
        (self.connected, self.username, self.will, self.willDueAt) = (connected, username, will, willDueAt)
    }
}

/// A subscription row.
public struct StoredSubscription: Sendable, Equatable {
    public var clientID: String
    public var subscription: Subscription

    public init(clientID: String, subscription: Subscription) {
        (self.clientID, self.subscription) = (clientID, subscription)
    }
}

/// An application message stored once and referenced by every session that queues it.
public struct StoredMessage: Sendable, Equatable {
    public var id: Int64
    public var topic: String
    public var payload: ByteBuffer
    public var qos: MQTTQoS
    public var retain: Bool
    /// PUBLISH properties, encoded as on the wire (without the length prefix).
    public var properties: MQTTProperties
    public var expiresAt: StoreTime?
    public var publisher: String

    public init(
        id: Int64, topic: String, payload: ByteBuffer, qos: MQTTQoS, retain: Bool, properties: MQTTProperties,
        expiresAt: StoreTime?, publisher: String
    ) {
        (self.id, self.topic, self.payload, self.qos, self.retain, self.properties) = (id, topic, payload, qos, retain, properties)
        (self.expiresAt, self.publisher) = (expiresAt, publisher)
    }
}

/// Where an outbound message is in its session's flow.
public enum StoredDeliveryState: Int, Sendable, Equatable {
    /// Waiting to be sent.
    case queued = 0
    /// PUBLISH sent with `packetID`; waiting for PUBACK / PUBREC.
    case sent = 1
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    case released = 2
}

/// One message in one session's outbound queue or in flight.
public struct StoredDelivery: Sendable, Equatable {
    public var clientID: String
    /// Order within the session.
    public var sequence: Int64
    public var messageID: Int64
    public var qos: MQTTQoS
    public var retain: Bool
    public var subscriptionIdentifiers: [Int]
    public var shareGroup: ShareGroupKey?
    public var state: StoredDeliveryState
    public var packetID: UInt16?

    public init(
        clientID: String, sequence: Int64, messageID: Int64, qos: MQTTQoS, retain: Bool, subscriptionIdentifiers: [Int],
        shareGroup: ShareGroupKey?, state: StoredDeliveryState, packetID: UInt16?
    ) {
        (self.clientID, self.sequence, self.messageID, self.qos, self.retain) = (clientID, sequence, messageID, qos, retain)
        (self.subscriptionIdentifiers, self.shareGroup, self.state, self.packetID) = (subscriptionIdentifiers, shareGroup, state, packetID)
    }
}

/// Everything restored at start-up.
public struct StoredState: Sendable {
    public var sessions: [StoredSession] = []
    public var subscriptions: [StoredSubscription] = []
    public var messages: [StoredMessage] = []
    public var deliveries: [StoredDelivery] = []
    public var inboundQoS2: [(clientID: String, packetID: UInt16)] = []
    public var retained: [StoredMessage] = []

    public init() {}

    /// The state of each session of `clientIDs` (one read for many claimed together, split):
    /// its rows, and the payloads its deliveries name. A client without rows gets an empty state.
    public func split(by clientIDs: [String]) -> [String: StoredState] {
        var states = Dictionary(uniqueKeysWithValues: clientIDs.map { ($0, StoredState()) })
        for session in sessions { states[session.clientID]?.sessions.append(session) }
        for subscription in subscriptions { states[subscription.clientID]?.subscriptions.append(subscription) }
        for delivery in deliveries { states[delivery.clientID]?.deliveries.append(delivery) }
        for entry in inboundQoS2 { states[entry.clientID]?.inboundQoS2.append(entry) }
        let payloads = Dictionary(messages.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for (clientID, state) in states {
            var seen: Set<Int64> = []
            let named = state.deliveries.compactMap { seen.insert($0.messageID).inserted ? payloads[$0.messageID] : nil }
            states[clientID]?.messages = named
        }
        return states
    }
}

/// One durable change. The broker core produces them; a store applies a batch of them in one
/// transaction, in order.
public enum StoreOperation: Sendable, Equatable {
    /// Insert or replace a session row (its subscriptions and messages are untouched).
    case saveSession(StoredSession)
    /// Delete a session with its subscriptions, deliveries and inbound QoS 2 state.
    case deleteSession(clientID: String)
    case saveSubscription(StoredSubscription)
    case deleteSubscription(clientID: String, filter: String)
    /// Store a message payload once (ignored when the id exists).
    case saveMessage(StoredMessage)
    case saveDelivery(StoredDelivery)
    /// Update the state and packet id of a delivery.
    case updateDelivery(clientID: String, sequence: Int64, state: StoredDeliveryState, packetID: UInt16?)
    case deleteDelivery(clientID: String, sequence: Int64)
    case addInboundQoS2(clientID: String, packetID: UInt16)
    case removeInboundQoS2(clientID: String, packetID: UInt16)
    /// Set (or, with an empty payload, delete) the retained message of a topic.
    case setRetained(StoredMessage)
    /// Store a published message in `messages`, unless the de-duplication rule says it is a
    /// re-send (docs/architecture.md, "The ingest bridge"), decided atomically in the database.
    case ingest(IngestRecord)
    /// In a cluster, the will of a connection whose session is not stored, kept while the
    /// connection lasts so that a survivor publishes it if this node dies (migration 0007).
    case saveConnectionWill(StoredConnectionWill)
    case deleteConnectionWill(token: Int64)
    /// Replaying a spool (`FallbackStore`): the batches of `spool` up to `through` are applied,
    /// recorded in the same transaction, so a replay cut short resumes after them.
    case markReplayed(spool: String, through: Int64)
    /// What one connection's packet caused (its ingest row, queue rows, retained change, QoS 2
    /// entry), committed only while no later claim holds the connection's session: the shared
    /// store checks the session's epoch inside the commit's transaction (G2, G4; README
    /// "What the cluster promises under faults"). A store without claims writes them as they are.
    case fenced(SessionFence, [StoreOperation])
}

/// A connection's hold on its session: the client id and the epoch of the claim its CONNECT made.
/// A commit fenced by it applies only while the session row's epoch is not above `epoch`.
///
/// What a node spooled was acknowledged then, so its replay keeps it unless the later claim
/// was made before the node spooled it (`spooledAt`, wall-clock milliseconds): then the device
/// had already moved (the node was frozen or cut off) and the acknowledgement reached nobody —
/// the device re-sent elsewhere. A claim within 250 ms of the spooling counts as after it
/// (clocks differ a little): a copy re-sent then is left to the de-duplication rule.
public struct SessionFence: Hashable, Sendable {
    public var clientID: String
    public var epoch: Int64
    /// When the node committed the fenced operations to its spool; nil on the live path.
    public var spooledAt: Int64?

    public init(clientID: String, epoch: Int64, spooledAt: Int64? = nil) {
        (self.clientID, self.epoch, self.spooledAt) = (clientID, epoch, spooledAt)
    }

    /// How much earlier than the spooling a later claim must be for a replay to leave the
    /// fenced operations out.
    public static let spoolClockMargin: Int64 = 250

    /// When the first claim later than `epoch` was made, from a session's recent claims (pairs:
    /// epoch, then milliseconds since 1970); nil when none of them is later.
    public static func firstClaim(after epoch: Int64, in recent: [Int64]) -> Int64? {
        stride(from: 0, to: recent.count - 1, by: 2).first { recent[$0] > epoch }.map { recent[$0 + 1] }
    }

    /// Whether a session row holding claim `current` (its first claim after this fence's taken at
    /// `claimedAt`) overtakes this fence.
    public func isStale(current: Int64, claimedAt: Int64?) -> Bool {
        guard current > epoch else { return false }
        guard let spooledAt else { return true }
        guard let claimedAt else { return false }
        return claimedAt < spooledAt - Self.spoolClockMargin
    }
}

extension StoreOperation {
    /// The fences of `operations`, each once.
    public static func fences(in operations: [StoreOperation]) -> Set<SessionFence> {
        var fences: Set<SessionFence> = []
        for case .fenced(let fence, _) in operations { fences.insert(fence) }
        return fences
    }

    /// `operations` with each fence stamped as spooled at `now` (`SessionFence.spooledAt`).
    public static func spooled(_ operations: [StoreOperation], at now: Int64) -> [StoreOperation] {
        operations.map { operation in
            guard case .fenced(var fence, let guarded) = operation else { return operation }
            fence.spooledAt = fence.spooledAt ?? now
            return .fenced(fence, guarded)
        }
    }

    /// The QoS 2 entries that live fenced commits in `operations` add (a client's PUBLISH this
    /// node took for new: its session here held no entry for the packet id), but for those the
    /// batch itself clears first (a PUBREL's removal, a session's reset). One that the shared
    /// store holds already was written by another node after this node read the session (the
    /// old holder's replay of a message the client then re-sent here): the client's session
    /// here is stale, and the store leaves the fence's operations out as for a later claim —
    /// they would queue the message for subscribers a second time [MQTT-4.3.3].
    public static func newInboundQoS2(in operations: [StoreOperation]) -> [(fence: SessionFence, key: StoreBatch.InboundKey)] {
        var found: [(fence: SessionFence, key: StoreBatch.InboundKey)] = []
        var cleared: Set<StoreBatch.InboundKey> = []
        var reset: Set<String> = []
        func visit(_ operation: StoreOperation, under fence: SessionFence?) {
            switch operation {
            case .removeInboundQoS2(let clientID, let packetID):
                cleared.insert(StoreBatch.InboundKey(clientID: clientID, packetID: packetID))
            case .deleteSession(let clientID): reset.insert(clientID)
            case .addInboundQoS2(let clientID, let packetID):
                let key = StoreBatch.InboundKey(clientID: clientID, packetID: packetID)
                if let fence, fence.spooledAt == nil, !reset.contains(clientID), !cleared.contains(key) { found.append((fence, key)) }
            case .fenced(let inner, let guarded): for operation in guarded { visit(operation, under: inner) }
            default: break
            }
        }
        for operation in operations { visit(operation, under: nil) }
        return found
    }

    /// The fences of `found` (`newInboundQoS2`) whose entry the store holds already (`held`).
    public static func repeatedQoS2(_ found: [(fence: SessionFence, key: StoreBatch.InboundKey)], held: Set<StoreBatch.InboundKey>)
        -> Set<SessionFence>
    {
        Set(found.filter { held.contains($0.key) }.map(\.fence))
    }

    /// `operations` without their fences, leaving out what a fence in `stale` guards.
    public static func unfenced(_ operations: [StoreOperation], dropping stale: Set<SessionFence> = []) -> [StoreOperation] {
        guard operations.contains(where: { if case .fenced = $0 { true } else { false } }) else { return operations }
        var flat: [StoreOperation] = []
        flat.reserveCapacity(operations.count)
        for operation in operations {
            if case .fenced(let fence, let guarded) = operation {
                if !stale.contains(fence) { flat += guarded }
            } else {
                flat.append(operation)
            }
        }
        return flat
    }
}

/// The will of one connection of a session that is not stored; `token` names the connection.
public struct StoredConnectionWill: Sendable, Equatable {
    public var clientID: String
    public var token: Int64
    public var will: MQTTWill

    public init(clientID: String, token: Int64, will: MQTTWill) {
        (self.clientID, self.token, self.will) = (clientID, token, will)
    }
}

/// The storage port. Adapters (SQLite, PostgreSQL) implement it and pass the same
/// conformance suite (`StarlingTesting.StoreConformance`).
/// A user for password authentication: the name and a PHC hash string (never the password).
public struct StoredUser: Sendable, Equatable {
    public var username: String
    public var passwordHash: String
    /// SCRAM-SHA-256 credentials for enhanced authentication, if set.
    public var scram: String?

    public init(username: String, passwordHash: String, scram: String? = nil) {
        (self.username, self.passwordHash, self.scram) = (username, passwordHash, scram)
    }
}

public protocol PersistentStore: Sendable {
    /// A short name for logs: "sqlite", "postgres".
    var name: String { get }
    /// Applies pending migrations (recorded in `schema_migrations`).
    func migrate() async throws
    /// Reads everything a restart restores.
    func load() async throws -> StoredState
    /// Applies the operations in one transaction, in order: all of them or none (fenced ones
    /// as they are: see `commit`).
    func apply(_ operations: [StoreOperation]) async throws
    /// Applies the operations in one transaction, leaving out those whose fence a later claim
    /// of its session has overtaken (checked inside the transaction); returns those fences.
    /// Stores without claims (SQLite, one node) apply everything.
    func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence>
    /// Removes message payloads no delivery references any more; returns how many.
    func collectGarbage() async throws -> Int
    /// Deletes ingested messages received before `cutoff` (wall-clock ms) and keeps the time
    /// partitions ahead (PostgreSQL); returns how many rows or partitions went.
    func enforceRetention(before cutoff: Int64?, now: Int64) async throws -> Int
    /// The password users (`starling ctl users`), by name.
    func loadUsers() async throws -> [StoredUser]
    /// Creates the user or replaces its password hash.
    func saveUser(_ user: StoredUser) async throws
    /// Deletes the user; false when there was none of that name.
    func deleteUser(_ username: String) async throws -> Bool
    /// A round trip through the path commits take (readiness, when nothing has committed
    /// lately): throws when the store cannot be written to now.
    func ping() async throws
    /// How many batches the group commit may hand the store at once. Above 1, a batch of only
    /// new rows (`StoreOperation.isAppendOnly`) may start while other such batches commit,
    /// which hides the round trip, the flush, and the hop back to the broker's loop.
    var concurrentCommits: Int { get }
    /// True for a store that applies one batch at a time anyway (SQLite's single writer). The
    /// group commit then applies its batches from one task, strictly in submission order,
    /// retrying a failed batch before any later one, so the next batch (whatever it holds) can
    /// wait behind the committing one and start the moment it ends.
    var singleWriter: Bool { get }
    /// The last spool batch of `spool` recorded by `markReplayed` (0: none).
    func replayedThrough(spool: String) async throws -> Int64
    /// True when `error` says the store cannot be reached (connection refused or lost, no
    /// answer), as opposed to a refused statement: a `FallbackStore` spools on the former only.
    func isUnreachable(_ error: any Error) -> Bool
}

extension PersistentStore {
    public var concurrentCommits: Int { 1 }
    public var singleWriter: Bool { false }
    public func replayedThrough(spool _: String) async throws -> Int64 { 0 }
    public func isUnreachable(_: any Error) -> Bool { false }
    public func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        try await apply(operations)
        return []
    }
}

extension StoreOperation {
    /// True for an operation that only adds a row no other pending operation touches: a new
    /// message payload (its id is new) or a new delivery (its sequence is new). Two batches of
    /// such operations give the same result whichever commits first. Ingest rows are not among
    /// them: their de-duplication must see earlier copies first, and their ids follow arrival.
    public var isAppendOnly: Bool {
        switch self {
        case .saveMessage, .saveDelivery: true
        default: false
        }
    }
}
