import MQTTCodec
import NIOCore

/// One session as the admin API shows it (its JSON keys in snake_case).
public struct ClientSummary: Sendable, Equatable, Codable {
    public var clientID: String
    public var connected: Bool
    public var username: String?
    /// The connection's address (the client's, behind a PROXY protocol balancer); nil offline.
    public var remoteAddress: String?
    /// "3.1", "3.1.1" or "5.0".
    public var protocolVersion: String
    /// Seconds; nil offline.
    public var keepAlive: Int?
    public var sessionExpiryInterval: UInt32
    /// Kept in the store (expiry above 0).
    public var persistent: Bool
    public var subscriptions: [String]
    public var inflight: Int
    public var queued: Int

    /// Spelled out: the automatic snake_case conversion does not round-trip `clientID`.
    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", connected, username, remoteAddress = "remote_address", protocolVersion = "protocol_version"
        case keepAlive = "keep_alive", sessionExpiryInterval = "session_expiry_interval", persistent, subscriptions, inflight, queued
    }
}

/// What the admin API shows and does (README "Admin API and `starling ctl clients`"): the sessions, and closing a
/// client's connection. One of the broker's parts (`Broker.admin`), confined to its event loop
/// like the broker.
public final class BrokerAdmin {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    /// Every session, connected or not, by client id.
    public func clientSummaries() -> [ClientSummary] {
        broker.sessions.keys.sorted().compactMap { clientSummary($0) }
    }

    public func clientSummary(_ clientID: String) -> ClientSummary? {
        guard let session = broker.sessions[clientID] else { return nil }
        let connection = session.connection
        return ClientSummary(
            clientID: clientID, connected: connection?.isConnected ?? false, username: session.username,
            remoteAddress: connection?.transport.remoteAddress,
            protocolVersion: session.version == .v5 ? "5.0" : session.version == .v3_1_1 ? "3.1.1" : "3.1",
            keepAlive: connection.map { Int($0.keepAlive) }, sessionExpiryInterval: session.expiryInterval,
            persistent: session.isPersistent, subscriptions: session.subscriptions.keys.sorted(),
            inflight: session.inflightCount, queued: session.queuedCount)
    }

    /// Closes the client's connection as an administrative action (5.0 clients get DISCONNECT
    /// 0x98; the will is published, as for any close the client did not ask for). With
    /// `endSession`, its session ends too, stored state included. False when there is no
    /// session of that id.
    public func disconnectClient(_ clientID: String, endSession end: Bool) -> Bool {
        guard let session = broker.sessions[clientID] else { return false }
        if let connection = session.connection, connection.state != .closed {
            broker.logger.notice("disconnecting client by administrative action", metadata: ["mqtt.client_id": "\(clientID)"])
            if connection.version == .v5 && connection.isConnected {
                broker.send(.disconnect(MQTTDisconnect(reasonCode: .administrativeAction)), on: connection)
            }
            broker.close(connection)
        }
        if end, broker.sessions[clientID] === session { broker.lifecycle.endSession(session, now: broker.clock.now()) }
        broker.commitCollected()
        broker.flush()
        return true
    }
}
