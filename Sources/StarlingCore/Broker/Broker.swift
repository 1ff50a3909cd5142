public import Logging
public import MQTTCodec
import NIOCore

/// The broker core: sessions, routing, retained messages, QoS flows, wills, keep alive and
/// limits. It performs no I/O: it is driven by events (`accept`, `received`, `closed`,
/// `tick`) and acts through its ports (`ClientTransport`, `Authenticator`, `Authorizer`).
///
/// A broker is confined to one event loop: every call must come from it. That keeps the hot
/// path free of locks, like Mosquitto's single thread; storage and cluster I/O run elsewhere
/// and hop back.
public final class Broker: @unchecked Sendable {
    public let configuration: BrokerConfiguration
    public let clock: any BrokerClock
    public let authenticator: any Authenticator
    public let authorizer: any Authorizer
    public var logger: Logger
    public let version: String

    /// Live network connections, CONNECT received or not.
    var connections: Set<Connection> = []
    var sessions: [String: Session] = [:]
    let index = SubscriptionIndex<String, Subscription>()
    var retained = RetainedStore()
    public internal(set) var stats = BrokerStats()
    /// Connections written to since the last `flush()`.
    var pendingFlush: [Connection] = []
    /// Which member (or node) gets a shared group's message.
    var shared: SharedGroupChooser
    var randomNumbers = SystemRandomNumberGenerator()
    let startedAt: NIODeadline
    var lastSysPublish: NIODeadline
    /// Dropped messages, warned of at most every ten seconds.
    var drops = ThrottledCount(interval: .seconds(10))
    var nextAssignedID: UInt64 = 0
    var accepting = true
    /// The shared store cannot be reached and commits go to this node's spool (set by the app
    /// from `FallbackStore`): sessions that need a claim are refused (`outageRefusal`).
    public internal(set) var storeSpooling = false
    /// This node's spool is being replayed into the shared store: claims wait for the end of
    /// the replay (`Takeover.replayEnded`), then go on.
    public internal(set) var storeReplaying = false {
        didSet { if oldValue && !storeReplaying { takeover.replayEnded() } }
    }
    /// In a cluster: this node cannot reach the store while a peer can (the cluster's
    /// partition check): it is not ready, even while it spools.
    public var clusterCutOff: Bool { takeover.cutOff }
    /// This node started on its spool without loading the store's state: stored sessions
    /// cannot be resumed until `adoptDeferredState` brings them.
    public internal(set) var storeStateDeferred = false

    /// The group-commit writer of the store; nil runs in memory only.
    public var persistence: GroupCommitWriter? {
        didSet {
            persistence?.onBacklogChanged = { [unowned self] in self.storeBacklogChanged($0) }
            persistence?.onFenced = { [unowned self] in self.connectionFenced($0) }
        }
    }
    /// While the store is backlogged, each client that publishes stops being read; these are
    /// resumed when it catches up.
    var pausedForStore: [Connection] = []
    /// The store writes of the event being handled, and the ids this node generates.
    var writes = PendingWrites()
    /// Client ids whose sessions are not stored but may have `inbound_qos2` entries in the
    /// store (written by the ingest bridge with QoS 2 rows): their next clean start removes
    /// them. Every other clean start writes nothing.
    var clientsWithStoredQoS2: Set<String> = []

    /// The cluster, when this node is part of one.
    public var cluster: (any ClusterBus)?
    /// Told each partition verdict (`observeCutOff`).
    var cutOffObserver: ((Bool) -> Void)?
    /// Sessions changing hands between nodes: claims, and sessions let go.
    private(set) var takeover: Takeover!
    /// Routing across nodes: routes, the session directory, forwarding, pickups.
    private(set) var peers: PeerRouting!
    /// The outbound flow of sessions: queues, the in-flight window, acknowledgements.
    private(set) var flow: OutboundFlow!
    /// A session's life here: CONNECT, resumption, DISCONNECT, wills, the end of a session.
    private(set) var lifecycle: SessionLifecycle!
    /// PUBLISH from clients: checks, ingest, routing to this node's sessions, acknowledgements.
    private(set) var publishing: Publishing!
    /// SUBSCRIBE and UNSUBSCRIBE.
    private(set) var subscriptions: Subscriptions!
    /// The rows the broker writes (sessions, deliveries, retained messages).
    private(set) var rows: StoreRows!
    /// The `$SYS` topics.
    private(set) var sys: SysTopics!
    /// The state read back from the store.
    private(set) var restoring: StateRestore!
    /// What the admin API shows and does.
    public private(set) var admin: BrokerAdmin!

    public init(
        configuration: BrokerConfiguration = .init(),
        clock: any BrokerClock = SystemBrokerClock(),
        authenticator: any Authenticator = AllowAllAuthenticator(),
        authorizer: any Authorizer = RuleAuthorizer(),
        logger: Logger = Logger(label: "starling.broker"),
        version: String = "starling"
    ) {
        (self.configuration, self.clock, self.authenticator, self.authorizer) = (configuration, clock, authenticator, authorizer)
        (self.logger, self.version) = (logger, version)
        self.startedAt = clock.now()
        self.lastSysPublish = startedAt
        self.shared = SharedGroupChooser(strategy: configuration.sharedStrategy)
        // The parts, once every other property is set (each holds the broker; stored, not
        // lazy: the hot path reaches them per message).
        takeover = Takeover(broker: self)
        peers = PeerRouting(broker: self)
        flow = OutboundFlow(broker: self)
        lifecycle = SessionLifecycle(broker: self)
        publishing = Publishing(broker: self)
        subscriptions = Subscriptions(broker: self)
        rows = StoreRows(broker: self)
        sys = SysTopics(broker: self)
        restoring = StateRestore(broker: self)
        admin = BrokerAdmin(broker: self)
    }

    // MARK: Read-only views

    public var connectionCount: Int { connections.count }
    public var connectedClientCount: Int { connections.count { $0.isConnected } }
    public var sessionCount: Int { sessions.count }
    public var subscriptionCount: Int { index.count }
    public var retainedCount: Int { retained.count }
    public func session(_ clientID: String) -> Session? { sessions[clientID] }

    // MARK: Events from the transport

    /// A network connection was accepted.
    public func accept(_ transport: any ClientTransport) -> Connection {
        let connection = Connection(transport: transport, now: clock.now())
        connections.insert(connection)
        stats.connectionsAccepted += 1
        return connection
    }

    /// A packet arrived on `connection`.
    public func received(_ packet: MQTTPacket, on connection: Connection) {
        guard connection.state != .closed else { return }
        connection.lastReceived = clock.now()
        stats.messagesReceived += 1
        switch connection.state {
        case .awaitingConnect:
            guard case .connect(let connect) = packet else {
                // [MQTT-3.1.0-1] The first packet must be CONNECT.
                fail(connection, .protocolError, "expected CONNECT, got \(packet.type)", spec: "MQTT-3.1.0-1")
                break
            }
            lifecycle.handleConnect(connect, on: connection)
        case .authenticating:
            guard let state = connection.authentication else { break }
            if state.method == nil {
                state.held.append(packet)  // a password check: handled once it is decided
            } else if case .auth(let auth) = packet {
                lifecycle.handleAuth(auth, on: connection)
            } else if case .disconnect = packet {
                close(connection)
            } else {
                // Only AUTH or DISCONNECT before the CONNACK of an enhanced authentication.
                connection.state = .awaitingConnect
                refuse(connection, reason: .protocolError, message: "\(packet.type) during enhanced authentication")
            }
        case .connecting, .connected:
            handlePacket(packet, on: connection)
        case .closed:
            break
        }
        commitCollected()
    }

    /// The decoder refused what arrived on `connection`: answer as the specification says and
    /// close [MQTT-4.13.1-1]. Nothing else is affected.
    public func decodeFailed(_ error: MQTTCodecError, on connection: Connection) {
        guard connection.state != .closed else { return }
        stats.protocolErrors += 1
        if connection.state == .awaitingConnect {
            lifecycle.connectUndecodable(error, on: connection)
            return
        }
        fail(connection, error.reasonCode, error.message, spec: error.specID)
        commitCollected()
    }

    /// The transport refused the connection before any MQTT (a missing or malformed PROXY
    /// protocol header): logged, counted as a protocol error, closed.
    public func transportRefused(_ connection: Connection, reason: String) {
        guard connection.state != .closed else { return }
        stats.protocolErrors += 1
        logger.info("closing connection: \(reason)", metadata: ["remote": "\(connection.transport.remoteAddress)"])
        close(connection)
    }

    /// The network connection closed (by the peer, an error or `close`).
    public func closed(_ connection: Connection) {
        if connection.state != .closed { lifecycle.detach(connection) }
        connections.remove(connection)
        commitCollected()
    }

    /// The transport can take data again: send what was queued.
    public func writabilityChanged(_ connection: Connection) {
        if connection.transport.isWritable, let session = connection.session {
            flow.pump(session)
        }
    }

    /// Sends everything written since the last flush. The transport calls this at the end of
    /// each read batch, and timers call it after their work.
    public func flush() {
        // Take the list first: flushing can re-enter `send` (a connection written to during
        // the flush goes on the next list, so none is ever left unflushed).
        var list: [Connection] = []
        swap(&list, &pendingFlush)
        for connection in list where connection.needsFlush {
            connection.needsFlush = false
            connection.transport.flush()
        }
        list.removeAll(keepingCapacity: true)
        if pendingFlush.isEmpty { swap(&list, &pendingFlush) }
    }

    /// Counts bytes for `$SYS` (the transport knows sizes after encoding).
    public func recordBytes(received: Int = 0, sent: Int = 0) {
        stats.bytesReceived += UInt64(received)
        stats.bytesSent += UInt64(sent)
    }

    /// Stops accepting connections and disconnects every client: 5.0 clients get DISCONNECT
    /// with `reason` (0x8B Server shutting down, or 0x9C Use another server with a reference).
    public func shutdown(reason: MQTTReasonCode = .serverShuttingDown, serverReference: String? = nil) {
        accepting = false
        for connection in connections { lifecycle.disconnectForShutdown(connection, reason: reason, serverReference: serverReference) }
        commitCollected()
        flush()
    }

    /// A drain step: stops accepting and disconnects up to `count` clients as `shutdown` does, so
    /// that a drain moves clients to other nodes at a bounded rate. Returns how many
    /// connections remain.
    public func drain(upTo count: Int, reason: MQTTReasonCode = .serverShuttingDown, serverReference: String? = nil) -> Int {
        accepting = false
        for connection in connections.prefix(count) {
            lifecycle.disconnectForShutdown(connection, reason: reason, serverReference: serverReference)
        }
        commitCollected()
        flush()
        return connections.count { $0.state != .closed }
    }

    /// Dispatches a packet of a connected client.
    func handlePacket(_ packet: MQTTPacket, on connection: Connection) {
        switch packet {
        case .connect:
            fail(connection, .protocolError, "a second CONNECT", spec: "MQTT-3.1.0-2")
        case .publish(let publish):
            stats.publishReceived += 1
            publishing.handlePublish(publish, on: connection)
        case .puback(let ack):
            flow.pubAck(ack, on: connection)
        case .pubrec(let ack):
            flow.pubRec(ack, on: connection)
        case .pubrel(let ack):
            publishing.handlePubRel(ack, on: connection)
        case .pubcomp(let ack):
            flow.pubComp(ack, on: connection)
        case .subscribe(let subscribe):
            subscriptions.handleSubscribe(subscribe, on: connection)
        case .unsubscribe(let unsubscribe):
            subscriptions.handleUnsubscribe(unsubscribe, on: connection)
        case .pingreq:
            durably([]) { self.send(.pingresp, on: connection) }  // [MQTT-3.12.4-1], in order with acks
        case .disconnect(let disconnect):
            lifecycle.handleDisconnect(disconnect, on: connection)
        case .auth(let auth):
            lifecycle.handleAuth(auth, on: connection)
        case .connack, .suback, .unsuback, .pingresp:
            fail(connection, .protocolError, "\(packet.type) is not sent by clients")
        }
    }

    // MARK: Sending and closing

    func send(_ packet: MQTTPacket, on connection: Connection) {
        guard connection.state != .closed || packet.type == .disconnect || packet.type == .connack else { return }
        if !connection.needsFlush { pendingFlush.append(connection) }
        connection.send(packet)
        stats.messagesSent += 1
    }

    /// Closes the network connection after what was written.
    func close(_ connection: Connection) {
        if connection.state != .closed { lifecycle.detach(connection) }
        if connection.needsFlush {
            connection.needsFlush = false
            connection.transport.flush()
        }
        connection.transport.close()
    }

    /// A protocol violation after CONNECT: DISCONNECT with the reason (5.0), then close
    /// [MQTT-4.13.1-1]. The will is published [MQTT-3.1.2-8].
    func fail(_ connection: Connection, _ reason: MQTTReasonCode, _ message: String, spec: String? = nil) {
        guard connection.state != .closed else { return }
        stats.protocolErrors += 1
        logger.info(
            "disconnecting client: \(reason): \(message)\(spec.map { " [\($0)]" } ?? "")",
            metadata: ["mqtt.client_id": "\(connection.clientID)", "remote": "\(connection.transport.remoteAddress)"])
        if connection.state == .awaitingConnect {
            refuse(connection, reason: reason, message: message)
            return
        }
        if connection.version == .v5 {
            var properties: MQTTProperties = []
            if connection.requestProblemInformation { properties.append(.reasonString(message)) }
            send(.disconnect(MQTTDisconnect(reasonCode: reason, properties: properties)), on: connection)
        }
        close(connection)
    }

    /// Refuses a CONNECT: CONNACK with the reason (or its 3.x return code), then close
    /// [MQTT-3.2.2-7].
    func refuse(_ connection: Connection, reason: MQTTReasonCode, message: String) {
        stats.connectionsRefused += 1
        logger.info(
            "refusing connection: \(reason): \(message)",
            metadata: ["mqtt.client_id": "\(connection.clientID)", "remote": "\(connection.transport.remoteAddress)"])
        var properties: MQTTProperties = []
        if connection.version == .v5 && connection.requestProblemInformation { properties.append(.reasonString(message)) }
        send(.connack(MQTTConnAck(sessionPresent: false, reasonCode: reason, properties: properties)), on: connection)
        connection.publishWillOnClose = false
        connection.state = .closed
        close(connection)
    }

    // MARK: Drops

    /// Counts dropped messages and logs at most one warning every ten seconds.
    func countDrops(_ count: Int, reason: String) {
        guard count > 0 else { return }
        stats.messagesDropped += UInt64(count)
        guard let dropped = drops.add(count, now: clock.now()) else { return }
        logger.warning("dropped \(dropped) message(s); latest: \(reason)")
    }
}
