import Foundation
import Logging
import MQTTCodec
import NIOCore
import PostgresNIO
public import StarlingCore

/// Reading the state back: at start-up, for a claimed session, for a pickup.
extension PostgresStore {
    public func load() async throws -> StoredState {
        try await load(only: nil)
    }

    /// A row of `sessions` (`SELECT *`).
    static func session(_ row: PostgresRow) throws -> StoredSession {
        let r = row.makeRandomAccess()
        var will: MQTTWill?
        if let topic = try r["will_topic"].decode(String?.self) {
            let properties = try r["will_properties"].decode(ByteBuffer?.self) ?? ByteBuffer()
            will = MQTTWill(
                topic: topic, payload: try r["will_payload"].decode(ByteBuffer?.self) ?? ByteBuffer(),
                qos: MQTTQoS(rawValue: UInt8(try r["will_qos"].decode(Int16?.self) ?? 0)) ?? .atMostOnce,
                retain: try r["will_retain"].decode(Bool?.self) ?? false,
                properties: try StoreCoding.decodeProperties(Array(properties.readableBytesView), context: .will))
        }
        var session = StoredSession(
            clientID: try r["client_id"].decode(String.self),
            version: MQTTProtocolVersion(rawValue: UInt8(try r["protocol_version"].decode(Int16.self))) ?? .v5,
            expiryInterval: UInt32(clamping: try r["expiry_interval"].decode(Int64.self)),
            expiresAt: try r["expires_at"].decode(Int64?.self), connected: try r["connected"].decode(Bool.self),
            username: try r["username"].decode(String?.self), will: will, willDueAt: try r["will_due_at"].decode(Int64?.self))
        session.epoch = try r["claim_epoch"].decode(Int64.self)
        return session
    }

    /// A row of `message_payloads`.
    static func payload(_ row: PostgresRow) throws -> StoredMessage {
        let r = row.makeRandomAccess()
        return StoredMessage(
            id: try r["id"].decode(Int64.self), topic: try r["topic"].decode(String.self),
            payload: try r["payload"].decode(ByteBuffer.self),
            qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce, retain: try r["retain"].decode(Bool.self),
            properties: try StoreCoding.decodeProperties(
                Array((try r["properties"].decode(ByteBuffer?.self) ?? ByteBuffer()).readableBytesView), context: .publish),
            expiresAt: try r["expires_at"].decode(Int64?.self), publisher: try r["publisher"].decode(String.self))
    }

    /// Everything a restart restores, or (with `only`) what the sessions of these clients hold.
    func load(only clientIDs: [String]?) async throws -> StoredState {
        var state = StoredState()
        // Some clients' sessions; in a cluster a node's own sessions; else every session.
        let clients: PostgresQuery =
            if let clientIDs {
                "SELECT unnest(\(clientIDs)::text[])"
            } else if let ownerNode {
                "SELECT client_id FROM sessions WHERE owner_node = \(ownerNode)"
            } else {
                "SELECT client_id FROM sessions"
            }
        func scoped(_ select: String, order: String = "") -> PostgresQuery {
            var query = clients
            query.sql = "\(select) WHERE client_id IN (\(clients.sql)) \(order)"
            return query
        }
        for row in try await client.rows(scoped("SELECT * FROM sessions"), logger: logger) {
            state.sessions.append(try Self.session(row))
        }
        for row in try await client.rows(scoped("SELECT * FROM subscriptions"), logger: logger) {
            let r = row.makeRandomAccess()
            let filter = try MQTTTopicFilter(try r["filter"].decode(String.self))
            let request = MQTTSubscription(
                filter: filter, qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce,
                noLocal: try r["no_local"].decode(Bool.self), retainAsPublished: try r["retain_as_published"].decode(Bool.self),
                retainHandling: .init(rawValue: UInt8(try r["retain_handling"].decode(Int16.self))) ?? .sendOnSubscribe)
            let identifier = try r["subscription_id"].decode(Int32?.self).map(Int.init)
            state.subscriptions.append(
                StoredSubscription(
                    clientID: try r["client_id"].decode(String.self),
                    subscription: Subscription(request, identifier: identifier)))
        }
        try await loadDeliveries(of: clients, into: &state)
        // The ingest bridge's entries of clients without a stored session too.
        let inbound: PostgresQuery =
            clientIDs.map { "SELECT client_id, packet_id FROM inbound_qos2 WHERE client_id = ANY(\($0))" }
            ?? "SELECT client_id, packet_id FROM inbound_qos2"
        for row in try await client.rows(inbound, logger: logger) {
            let (clientID, packetID) = try row.decode((String, Int32).self)
            state.inboundQoS2.append((clientID, UInt16(clamping: packetID)))
        }
        if clientIDs != nil { return state }
        state.retained = try await loadRetained()
        return state
    }

    /// The queued and in-flight deliveries of the clients `clients` selects, with their payloads.
    func loadDeliveries(of clients: PostgresQuery, into state: inout StoredState) async throws {
        var payloads = clients
        payloads.sql =
            "SELECT * FROM message_payloads p WHERE p.id IN (SELECT message_id FROM session_messages WHERE client_id IN (\(clients.sql)) AND state <> 3)"
        // Read whole (`rows`): claims read large queues.
        for row in try await client.rows(payloads, logger: logger) {
            state.messages.append(try Self.payload(row))
        }
        var deliveries = clients
        deliveries.sql = "SELECT * FROM session_messages WHERE client_id IN (\(clients.sql)) AND state <> 3 ORDER BY client_id, seq"
        for row in try await client.rows(deliveries, logger: logger) {
            let r = row.makeRandomAccess()
            let shareName = try r["share_name"].decode(String?.self)
            let shareFilter = try r["share_filter"].decode(String?.self)
            state.deliveries.append(
                StoredDelivery(
                    clientID: try r["client_id"].decode(String.self), sequence: try r["seq"].decode(Int64.self),
                    messageID: try r["message_id"].decode(Int64.self),
                    qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atLeastOnce,
                    retain: try r["retain"].decode(Bool.self),
                    subscriptionIdentifiers: StoreCoding.decodeIdentifiers(try r["subscription_ids"].decode(String?.self)),
                    shareGroup: shareName.flatMap { name in shareFilter.map { ShareGroupKey(name: name, filter: $0) } },
                    state: StoredDeliveryState(rawValue: Int(try r["state"].decode(Int16.self))) ?? .queued,
                    packetID: try r["packet_id"].decode(Int32?.self).map { UInt16(clamping: $0) }))
        }
    }
}

extension PostgresStore {
    public func loadRetained() async throws -> [StoredMessage] {
        var retained: [StoredMessage] = []
        for row in try await client.rows("SELECT * FROM retained", logger: logger) {
            let r = row.makeRandomAccess()
            retained.append(
                StoredMessage(
                    id: try r["message_id"].decode(Int64.self), topic: try r["topic"].decode(String.self),
                    payload: try r["payload"].decode(ByteBuffer.self),
                    qos: MQTTQoS(rawValue: UInt8(try r["qos"].decode(Int16.self))) ?? .atMostOnce, retain: true,
                    properties: try StoreCoding.decodeProperties(
                        Array((try r["properties"].decode(ByteBuffer?.self) ?? ByteBuffer()).readableBytesView), context: .publish),
                    expiresAt: try r["expires_at"].decode(Int64?.self), publisher: try r["publisher"].decode(String.self)))
        }
        return retained
    }
}
