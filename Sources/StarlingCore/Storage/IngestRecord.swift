public import NIOCore

/// One published message for the `messages` table (docs/architecture.md, "The ingest bridge").
public struct IngestRecord: Sendable, Equatable {
    /// How a re-sent message is recognised.
    public enum Dedup: Sendable, Equatable {
        /// QoS 0: never re-sent; always stored.
        case none
        /// QoS 1: a duplicate when the last entry for (client id, packet id) has the same content
        /// hash and the PUBLISH carries DUP = 1 (`dup_flag`), or whatever its DUP (`content`);
        /// replayed from a spool, also when it was received no later than that entry.
        case qos1(dup: Bool, contentOnly: Bool)
        /// QoS 2: a duplicate while an `inbound_qos2` entry for (client id, packet id) exists; the
        /// entry is created with the row, in the same transaction. Replayed from a spool, also a
        /// duplicate when received no later than the last entry with the same content (the
        /// device re-sent it through another node, which stored it and released the entry).
        case qos2
    }

    /// Wall-clock milliseconds since 1970 when the broker received it.
    public var receivedAt: Int64
    public var clientID: String
    public var username: String?
    public var packetID: UInt16?
    /// The resolved topic name (never a topic alias).
    public var topic: String
    public var payload: ByteBuffer
    public var qos: UInt8
    public var retain: Bool
    public var contentType: String?
    public var userProperties: [(String, String)]
    /// SHA-256 of the topic, a zero byte and the payload.
    public var contentHash: [UInt8]
    public var nodeID: String
    public var dedup: Dedup
    /// Replayed from a spool (`FallbackStore`), not received now: the QoS 1 rule also takes a
    /// record received no later than the last entry with the same content for a duplicate
    /// (`isDuplicate(ofLast:receivedAt:)`). Not part of the spool's byte form.
    public var replayed = false
    /// Replayed from the batch that was committing when the primary went away: it may be
    /// stored already. A QoS 0 record (no key) is then skipped when an identical row (client,
    /// receive time, topic, content) exists. Not part of the spool's byte form.
    public var mayBeStored = false

    public init(
        receivedAt: Int64, clientID: String, username: String?, packetID: UInt16?, topic: String, payload: ByteBuffer,
        qos: UInt8, retain: Bool, contentType: String?, userProperties: [(String, String)], contentHash: [UInt8],
        nodeID: String, dedup: Dedup
    ) {
        (self.receivedAt, self.clientID, self.username, self.packetID, self.topic) = (receivedAt, clientID, username, packetID, topic)
        (self.payload, self.qos, self.retain, self.contentType, self.userProperties) = (payload, qos, retain, contentType, userProperties)
        (self.contentHash, self.nodeID, self.dedup) = (contentHash, nodeID, dedup)
    }

    public static func == (lhs: IngestRecord, rhs: IngestRecord) -> Bool {
        lhs.receivedAt == rhs.receivedAt && lhs.clientID == rhs.clientID && lhs.username == rhs.username
            && lhs.packetID == rhs.packetID && lhs.topic == rhs.topic && lhs.payload == rhs.payload && lhs.qos == rhs.qos
            && lhs.retain == rhs.retain && lhs.contentType == rhs.contentType
            && lhs.userProperties.map { [$0.0, $0.1] } == rhs.userProperties.map { [$0.0, $0.1] }
            && lhs.contentHash == rhs.contentHash && lhs.nodeID == rhs.nodeID && lhs.dedup == rhs.dedup
    }

    /// The key of the de-duplication rule, for records that have one.
    public var dedupKey: DedupKey? {
        guard let packetID, dedup != .none else { return nil }
        return DedupKey(clientID: clientID, packetID: packetID)
    }

    public struct DedupKey: Hashable, Sendable {
        public var clientID: String
        public var packetID: UInt16
    }
}

extension IngestRecord {
    /// The QoS 1 rule against the last entry of (client id, packet id): the same content and
    /// either a re-send (DUP = 1, or `content` mode) or, for a replayed record, received no
    /// later than that entry. The last clause covers what a spool replay brings (README "SQLite
    /// fallback"): the same record applied twice (the batch in flight when PostgreSQL went away
    /// may have committed before it was spooled), and an original replayed after the DUP
    /// re-send another node stored first (node clocks agree to well within the re-send time).
    public func isDuplicate(ofLast hash: [UInt8], receivedAt lastReceivedAt: Int64) -> Bool {
        guard hash == contentHash else { return false }
        switch dedup {
        case .qos1(let dup, let contentOnly): return dup || contentOnly || (replayed && receivedAt <= lastReceivedAt)
        case .qos2: return replayed && receivedAt <= lastReceivedAt
        case .none: return false
        }
    }

    /// De-duplicates a batch in memory before it is written (two copies of one key in one
    /// `INSERT … ON CONFLICT DO UPDATE` is an error in PostgreSQL): a later record with the same
    /// key is a duplicate of an earlier one when the rule says so, and is dropped; a later
    /// record that is a new message replaces the earlier one as "the last entry" — both rows
    /// are kept, split into separate rounds. Returns the rounds to write in order; within a round
    /// every key appears once.
    public static func rounds(_ records: [IngestRecord]) -> [[IngestRecord]] {
        var rounds: [[IngestRecord]] = []
        var lastInBatch: [DedupKey: (hash: [UInt8], receivedAt: Int64, round: Int)] = [:]
        for record in records {
            guard let key = record.dedupKey else {
                if rounds.isEmpty { rounds.append([]) }
                rounds[0].append(record)
                continue
            }
            var round = 0
            if let last = lastInBatch[key] {
                switch record.dedup {
                case .qos1:
                    if record.isDuplicate(ofLast: last.hash, receivedAt: last.receivedAt) { continue }
                case .qos2:
                    continue  // the entry of the earlier copy exists: duplicate
                case .none:
                    break
                }
                round = last.round + 1
            }
            while rounds.count <= round { rounds.append([]) }
            rounds[round].append(record)
            lastInBatch[key] = (record.contentHash, record.receivedAt, round)
        }
        return rounds
    }
}
