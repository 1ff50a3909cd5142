import Foundation
import Logging
public import MQTTCodec
import NIOCore
import PostgresNIO
public import StarlingCore

/// Session ownership in the shared store (migrations 0006, 0011, 0013): claims by epoch, the
/// sessions a claim reads, the dead-node clean-up and the session directory, over the store's
/// pool (docs/architecture.md, "Sessions across nodes").
public final class PostgresOwnership: SessionOwnershipStore {
    let store: PostgresStore
    var client: PostgresClient { store.client }
    var logger: Logger { store.logger }
    /// This node's id (nil: the node runs alone and owns every row).
    var ownerNode: String? { store.ownerNode }

    public init(store: PostgresStore) {
        self.store = store
    }

    public func loadRetained() async throws -> [StoredMessage] { try await store.loadRetained() }

    public func markOwned(_ clientID: String) async throws -> Int64 {
        try await claimOwnership(clientID).epoch
    }

    public func claimOwnership(_ clientID: String) async throws -> (epoch: Int64, previousOwner: String?) {
        try await claimOwnership(of: [clientID])[clientID] ?? (0, nil)
    }

    public func claimOwnership(of clientIDs: [String]) async throws -> [String: (epoch: Int64, previousOwner: String?)] {
        guard let ownerNode else { return Dictionary(uniqueKeysWithValues: clientIDs.map { ($0, (0, nil)) }) }
        let (client, logger) = (client, logger)
        // A node frozen (or cut off) in the middle of a commit holds the session's row (read
        // FOR SHARE by its fenced writes) until it resumes: the database decides ownership, so
        // its transaction is ended rather than waited for. Ended, it aborts; that node spools
        // the batch and its replay leaves out what the claim superseded. The claim's statement
        // carries a mark, by which the watchdog finds it (no extra round trip per claim).
        // A transaction that sits idle while it holds the row is a frozen one (a live node sends
        // its commit within milliseconds of its writes): ended after `idleLockWait`; any other
        // that holds the row past `claimLockWait` too.
        let mark = UUID().uuidString
        let watchdog = Task {
            var waited = Duration.zero
            for (wait, idleOnly) in [(Self.idleLockWait, true), (Self.claimLockWait, false)] {
                try await Task.sleep(for: wait - waited)
                waited = wait
                let ended = try await Self.endBlockers(ofStatementMarked: mark, idleOnly: idleOnly, client: client, logger: logger)
                if ended > 0 {
                    logger.warning(
                        "the claim of \(Self.sessions(clientIDs)) waited \(wait) for \(ended) \(idleOnly ? "idle " : "")transaction(s) holding its row (a node frozen or cut off mid-commit): ended them"
                    )
                }
            }
        }
        defer { watchdog.cancel() }
        return try await Self.claimRows(clientIDs, for: ownerNode, mark: mark, client: client, logger: logger)
    }

    /// "session a" or "7 sessions (a, b, …)", for a log line.
    static func sessions(_ clientIDs: [String]) -> String {
        clientIDs.count == 1
            ? "session \(clientIDs[0])" : "\(clientIDs.count) sessions (\(clientIDs.prefix(3).joined(separator: ", ")), …)"
    }

    /// How long a claim waits for another transaction's lock on the session's row before it
    /// ends that transaction: a commit holds it for milliseconds. One idle in its transaction
    /// for `idleLockWait` (its node sends nothing more: frozen, or cut off) is ended sooner, so
    /// a device of a frozen node waits less than a second in all (issue 20).
    static let claimLockWait = Duration.milliseconds(400)
    static let idleLockWait = Duration.milliseconds(120)

    /// Ends this cluster's transactions that block the statement carrying `mark` (not an
    /// operator's: only connections named `starling/…`; with `idleOnly`, only those idle in
    /// their transaction for 100 ms); returns how many.
    static func endBlockers(ofStatementMarked mark: String, idleOnly: Bool = false, client: PostgresClient, logger: Logger) async throws
        -> Int64
    {
        let rows = try await client.query(
            """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))::int8
            FROM pg_stat_activity w, pg_stat_activity a
            WHERE w.query LIKE \("/* claim \(mark) */%") AND a.pid = ANY(pg_blocking_pids(w.pid)) AND a.application_name LIKE 'starling/%'
              AND (NOT \(idleOnly) OR (a.state = 'idle in transaction' AND a.state_change < clock_timestamp() - interval '100 milliseconds'))
            """, logger: logger)
        for try await count in rows.decode(Int64.self) { return count }
        return 0
    }

    static func claimRows(
        _ clientIDs: [String], for ownerNode: String, mark: String, client: PostgresClient, logger: Logger
    ) async throws -> [String: (epoch: Int64, previousOwner: String?)] {
        // Each row goes to the claim with the highest epoch, whatever order the claims' updates
        // run in (migration 0006); each client of the batch takes its own epoch, as if claimed
        // alone. `previous` reads the rows as they were before. The rows are locked in the order
        // of their ids (`locked`), the order of every fenced write (`staleFences`): two nodes
        // claiming overlapping batches wait for each other, they never deadlock.
        let rows = try await client.rows(
            """
            /* claim \(unescaped: mark) */
            WITH ids AS (SELECT DISTINCT unnest(\(clientIDs)::text[]) AS client_id),
                 locked AS (SELECT s.client_id, s.owner_node FROM sessions s JOIN ids USING (client_id)
                            ORDER BY s.client_id FOR UPDATE OF s),
                 e AS (SELECT client_id, nextval('claim_epochs') AS epoch FROM ids),
                 t AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS at),
                 claimed AS (UPDATE sessions s SET owner_node = \(ownerNode), claim_epoch = e.epoch,
                                    claimed_at = (SELECT at FROM t),
                                    recent_claims = (SELECT a[greatest(cardinality(a) - 15, 1):] FROM
                                        (SELECT coalesce(s.recent_claims, '{}'::bigint[]) || ARRAY[e.epoch, (SELECT at FROM t)] AS a) h)
                             FROM e JOIN locked l USING (client_id)
                             WHERE s.client_id = e.client_id AND s.claim_epoch < e.epoch)
            SELECT e.client_id, e.epoch, l.owner_node FROM e LEFT JOIN locked l USING (client_id)
            """, logger: logger)
        var claims: [String: (epoch: Int64, previousOwner: String?)] = [:]
        for row in rows {
            let (clientID, epoch, previous) = try row.decode((String, Int64, String?).self)
            claims[clientID] = (epoch, previous == ownerNode ? nil : previous)
        }
        return claims
    }

    public func isReplaying(node: String) async throws -> Bool {
        // Only while that node holds its lease: one cut off or dead replays nothing soon.
        let rows = try await client.query(
            """
            SELECT 1 FROM spool_replays r JOIN nodes n ON n.node_id = r.node_id
            WHERE r.node_id = \(node) AND r.pending AND n.lease_until > now() LIMIT 1
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    public func claimSessions(_ clientIDs: [String]) async throws -> [String: StoredState] {
        try await store.load(only: clientIDs).split(by: clientIDs)
    }

    public func deliveries(of clientIDs: [String]) async throws -> (messages: [StoredMessage], deliveries: [StoredDelivery]) {
        var state = StoredState()
        try await store.loadDeliveries(of: "SELECT unnest(\(clientIDs)::text[])", into: &state)
        return (state.messages, state.deliveries)
    }

    /// How long after a node's lease ran out the survivors take its sessions and wills: a node
    /// alive but cut off from the database learns it within a second or two from its peers'
    /// word and lets its clients go first (ClusterRouter+Partition), and one whose lease lapsed
    /// for a moment has renewed it by then, so its clients' wills are not published while it
    /// keeps them.
    static let sweepGraceMilliseconds: Int64 = 3_000

    public func releaseDeadNodesSessions(now: Int64) async throws -> [StoredSession] {
        try await client.withTransaction(logger: logger) { connection in
            var released: [StoredSession] = []
            // SKIP LOCKED: survivors running this together take disjoint rows.
            let rows = try await connection.rows(
                """
                SELECT s.* FROM sessions s JOIN nodes n ON n.node_id = s.owner_node
                WHERE n.lease_until < now() - \(Self.sweepGraceMilliseconds)::bigint * interval '1 millisecond'
                    -- Judged by a node that has held its lease since before that one's ran out (0011).
                    AND EXISTS (SELECT 1 FROM nodes me WHERE me.node_id = \(ownerNode) AND me.lease_until > now()
                                AND me.held_since < n.lease_until)
                FOR UPDATE OF s SKIP LOCKED
                """, logger: logger)
            for row in rows { released.append(try PostgresStore.session(row)) }
            for var session in released {
                if session.connected {
                    // Its connection ended with its node: as an abnormal close [MQTT-3.1.2-8].
                    if session.expiryInterval != .max { session.expiresAt = now + Int64(session.expiryInterval) * 1000 }
                    if let will = session.will {
                        let delay = session.version == .v5 ? Int64(will.properties.willDelayInterval ?? 0) : 0
                        session.willDueAt = now + delay * 1000
                    }
                }
                try await connection.query(
                    """
                    UPDATE sessions SET owner_node = NULL, connected = false, expires_at = \(session.expiresAt), will_due_at = \(session.willDueAt)
                    WHERE client_id = \(session.clientID)
                    """, logger: logger)
            }
            return released
        }
    }

    public func takeDueWills(now: Int64) async throws -> [(clientID: String, will: MQTTWill)] {
        var wills: [(String, MQTTWill)] = []
        let rows = try await client.rows(
            """
            WITH due AS (
                SELECT client_id FROM sessions WHERE owner_node IS NULL AND will_due_at <= \(now) AND will_topic IS NOT NULL
                FOR UPDATE SKIP LOCKED
            ), taken AS (
                SELECT s.* FROM sessions s JOIN due USING (client_id)
            ), cleared AS (
                UPDATE sessions s SET will_topic = NULL, will_payload = NULL, will_qos = NULL, will_retain = NULL,
                    will_properties = NULL, will_due_at = NULL
                FROM due WHERE s.client_id = due.client_id
            )
            SELECT * FROM taken
            """, logger: logger)
        for row in rows {
            let session = try PostgresStore.session(row)
            if let will = session.will { wills.append((session.clientID, will)) }
        }
        return wills
    }

    public func takeSharedDeliveries(of clientIDs: [String]) async throws -> [(message: StoredMessage, group: ShareGroupKey)] {
        guard !clientIDs.isEmpty else { return [] }
        var taken: [(StoredMessage, ShareGroupKey)] = []
        let rows = try await client.rows(
            """
            WITH taken AS (
                DELETE FROM session_messages WHERE client_id = ANY(\(clientIDs)) AND share_name IS NOT NULL AND qos = 1
                RETURNING message_id, share_name, share_filter, client_id, seq
            )
            SELECT p.*, t.share_name, t.share_filter FROM taken t JOIN message_payloads p ON p.id = t.message_id ORDER BY t.client_id, t.seq
            """, logger: logger)
        for row in rows {
            let r = row.makeRandomAccess()
            taken.append(
                (
                    try PostgresStore.payload(row),
                    ShareGroupKey(name: try r["share_name"].decode(String.self), filter: try r["share_filter"].decode(String.self))
                ))
        }
        return taken
    }

    public func takeConnectionWills(firstToken: Int64) async throws -> [(clientID: String, will: MQTTWill)] {
        guard let ownerNode else { return [] }
        // A row is deleted by one statement only: survivors sweeping together each get others.
        return try await takeConnectionWills(
            """
            DELETE FROM connection_wills
            WHERE node_id IN (SELECT node_id FROM nodes
                              WHERE lease_until < now() - \(Self.sweepGraceMilliseconds)::bigint * interval '1 millisecond'
                                AND EXISTS (SELECT 1 FROM nodes me WHERE me.node_id = \(ownerNode) AND me.lease_until > now()
                                            AND me.held_since < nodes.lease_until)
                                AND node_id <> \(ownerNode))
               OR (node_id = \(ownerNode) AND token < \(firstToken))
            RETURNING client_id, topic, payload, qos, retain, properties
            """)
    }

    public func takeConnectionWills(tokens: [Int64]) async throws -> [(clientID: String, will: MQTTWill)] {
        guard let ownerNode, !tokens.isEmpty else { return [] }
        return try await takeConnectionWills(
            """
            DELETE FROM connection_wills WHERE node_id = \(ownerNode) AND token = ANY(\(tokens))
            RETURNING client_id, topic, payload, qos, retain, properties
            """)
    }

    private func takeConnectionWills(_ query: PostgresQuery) async throws -> [(clientID: String, will: MQTTWill)] {
        var wills: [(String, MQTTWill)] = []
        for row in try await client.rows(query, logger: logger) {
            let (clientID, topic, payload, qos, retain, properties) = try row.decode(
                (String, String, ByteBuffer, Int16, Bool, ByteBuffer).self)
            let will = MQTTWill(
                topic: topic, payload: payload, qos: MQTTQoS(rawValue: UInt8(qos)) ?? .atMostOnce, retain: retain,
                properties: try StoreCoding.decodeProperties(Array(properties.readableBytesView), context: .will))
            wills.append((clientID, will))
        }
        return wills
    }

    public func deleteExpiredSessions(now: Int64) async throws -> [String] {
        var gone: [String] = []
        // Their unreleased QoS 2 entries go with them: kept, one would be read into the client's
        // next session and take its next message under that packet id for a duplicate.
        let rows = try await client.rows(
            """
            WITH gone AS (
                DELETE FROM sessions WHERE owner_node IS NULL AND expires_at < \(now) AND will_topic IS NULL RETURNING client_id
            ), entries AS (
                DELETE FROM inbound_qos2 q USING gone WHERE q.client_id = gone.client_id
            )
            SELECT client_id FROM gone
            """, logger: logger)
        for row in rows { gone.append(try row.decode(String.self)) }
        return gone
    }

    /// The other nodes' stored sessions with their subscriptions (a node's starting session
    /// directory): one row per session, its subscriptions as arrays (a fleet's million
    /// subscriptions decode as a hundred thousand rows), each subscription's options packed in
    /// one integer (`Subscription` options: QoS, No Local << 2, Retain As Published << 3, Retain
    /// Handling << 4; parenthesised: PostgreSQL gives these operators one precedence, left to
    /// right) and 0 for no Subscription Identifier (identifiers start at 1).
    public func loadDirectory() async throws -> [SessionDirectoryEntry] {
        let me = ownerNode ?? ""
        let rows = try await client.rows(
            """
            SELECT s.client_id, s.owner_node,
                   coalesce(array_agg(b.filter) FILTER (WHERE b.filter IS NOT NULL), '{}'::text[]),
                   coalesce(array_agg((b.qos | (b.no_local::int << 2) | (b.retain_as_published::int << 3) | (b.retain_handling << 4))::int4)
                            FILTER (WHERE b.filter IS NOT NULL), '{}'::int4[]),
                   coalesce(array_agg(coalesce(b.subscription_id, 0)) FILTER (WHERE b.filter IS NOT NULL), '{}'::int4[])
            FROM sessions s LEFT JOIN subscriptions b USING (client_id)
            WHERE s.owner_node IS DISTINCT FROM \(me)
            GROUP BY s.client_id, s.owner_node
            """, logger: logger)
        var entries: [SessionDirectoryEntry] = []
        for row in rows {
            let (clientID, owner, filters, options, identifiers) = try row.decode((String, String?, [String], [Int32], [Int32]).self)
            var subscriptions: [Subscription] = []
            subscriptions.reserveCapacity(filters.count)
            for (index, filter) in filters.enumerated() where index < options.count && index < identifiers.count {
                guard let parsed = try? MQTTTopicFilter(filter) else { continue }
                let packed = options[index]
                let request = MQTTSubscription(
                    filter: parsed, qos: MQTTQoS(rawValue: UInt8(packed & 3)) ?? .atMostOnce, noLocal: packed & 4 != 0,
                    retainAsPublished: packed & 8 != 0, retainHandling: .init(rawValue: UInt8(packed >> 4 & 3)) ?? .sendOnSubscribe)
                subscriptions.append(Subscription(request, identifier: identifiers[index] == 0 ? nil : Int(identifiers[index])))
            }
            entries.append(SessionDirectoryEntry(clientID: clientID, owner: owner, subscriptions: subscriptions))
        }
        return entries
    }
}
