import Logging
public import MQTTCodec
public import NIOCore
public import StarlingCore

/// A broker driven directly, with a manual clock and recording transports; with a store and an
/// event loop, its durable writes go through the group commit to that store (e.g. an
/// `InMemoryStore` that holds or refuses commits), and every call must then run on that loop.
public final class BrokerHarness: @unchecked Sendable {
    public let clock = ManualClock()
    public let broker: Broker

    public init(
        configure: (inout BrokerConfiguration) -> Void = { _ in }, authenticator: any Authenticator = AllowAllAuthenticator(),
        authorizer: any Authorizer = RuleAuthorizer(), store: (any PersistentStore)? = nil, eventLoop: (any EventLoop)? = nil
    ) {
        var configuration = BrokerConfiguration()
        configuration.sysInterval = 0
        configure(&configuration)
        broker = Broker(configuration: configuration, clock: clock, authenticator: authenticator, authorizer: authorizer)
        if let store, let eventLoop {
            let writer = GroupCommitWriter(store: store, eventLoop: eventLoop, logger: Logger(label: "test.writer"))
            writer.onCommitted = { [broker] in broker.flush() }
            broker.persistence = writer
        }
    }

    public final class Client: @unchecked Sendable {
        public let transport: RecordingTransport
        public let connection: Connection
        public let broker: Broker
        public let version: MQTTProtocolVersion
        /// Packets read past the CONNACK, returned by the next `take()`.
        public var backlog: [MQTTPacket] = []

        public init(transport: RecordingTransport, connection: Connection, broker: Broker, version: MQTTProtocolVersion) {
            (self.transport, self.connection, self.broker, self.version) = (transport, connection, broker, version)
        }

        public func send(_ packet: MQTTPacket) {
            broker.received(packet, on: connection)
            broker.flush()
        }

        public func take() -> [MQTTPacket] {
            defer { backlog.removeAll() }
            return backlog + transport.take()
        }

        public func publish(
            _ topic: String, _ payload: String, qos: MQTTQoS = .atMostOnce, id: UInt16? = nil, retain: Bool = false,
            dup: Bool = false, properties: MQTTProperties = []
        ) {
            send(
                .publish(
                    MQTTPublish(
                        topic: topic, payload: ByteBuffer(string: payload), qos: qos, retain: retain, dup: dup,
                        packetID: id, properties: properties)))
        }

        public func subscribe(
            _ filter: String, qos: MQTTQoS = .atLeastOnce, id: UInt16 = 1, properties: MQTTProperties = [],
            noLocal: Bool = false, retainHandling: MQTTSubscription.RetainHandling = .sendOnSubscribe
        ) {
            send(
                .subscribe(
                    MQTTSubscribe(
                        packetID: id,
                        subscriptions: [
                            MQTTSubscription(
                                filter: try! MQTTTopicFilter(filter), qos: qos, noLocal: noLocal, retainHandling: retainHandling)
                        ], properties: properties)))
        }

        /// The PUBLISH packets among what was flushed.
        public func publishes() -> [MQTTPublish] {
            take().compactMap { if case .publish(let p) = $0 { p } else { nil } }
        }
    }

    /// Opens a connection and sends CONNECT; returns the client and the broker's answer.
    /// A client connected as `clientID` and subscribed to `filter` at `qos`, its SUBACK taken.
    public func subscriber(_ clientID: String, to filter: String, qos: MQTTQoS) -> Client {
        let (client, _) = connect(clientID)
        client.subscribe(filter, qos: qos)
        _ = client.take()
        return client
    }

    public func connect(
        _ clientID: String, version: MQTTProtocolVersion = .v5, cleanStart: Bool = true, keepAlive: UInt16 = 0,
        properties: MQTTProperties = [], will: MQTTWill? = nil
    ) -> (Client, MQTTConnAck?) {
        let transport = RecordingTransport(remoteAddress: clientID)
        let connection = broker.accept(transport)
        let client = Client(transport: transport, connection: connection, broker: broker, version: version)
        client.send(
            .connect(
                MQTTConnect(
                    version: version, clientID: clientID, cleanStart: cleanStart, keepAlive: keepAlive,
                    will: will, properties: properties)))
        var packets = client.take()
        guard case .connack(let ack) = packets.first else {
            client.backlog = packets
            return (client, nil)
        }
        packets.removeFirst()
        client.backlog = packets
        return (client, ack)
    }

    /// The network connection of `client` drops (no DISCONNECT).
    public func drop(_ client: Client) {
        broker.closed(client.connection)
        broker.flush()
    }

    public func advance(seconds: Int64) {
        clock.advance(by: .seconds(seconds))
        broker.tick()
    }
}
