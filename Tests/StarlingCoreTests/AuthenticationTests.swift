import MQTTCodec
import NIOCore
import NIOEmbedded
import StarlingCore
import StarlingTesting
import Synchronization
import Testing

/// An authenticator whose decisions the test makes, later (as password hashing does).
final class DeferredAuthenticator: Authenticator {
    let loop: EmbeddedEventLoop
    let promises = Mutex<[EventLoopPromise<MQTTReasonCode>]>([])

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func authenticate(_: AuthenticationRequest) -> AuthenticationDecision {
        let promise = loop.makePromise(of: MQTTReasonCode.self)
        promises.withLock { $0.append(promise) }
        return .pending(promise.futureResult)
    }

    func decide(_ reason: MQTTReasonCode) {
        let promise = promises.withLock { $0.removeFirst() }
        promise.succeed(reason)
        loop.run()
    }
}

@Suite("Authentication decided later")
struct AuthenticationTests {
    static func clientBeforeDecision() -> (BrokerHarness, DeferredAuthenticator, BrokerHarness.Client) {
        let loop = EmbeddedEventLoop()
        let authenticator = DeferredAuthenticator(loop: loop)
        let h = BrokerHarness(authenticator: authenticator)
        let transport = RecordingTransport(remoteAddress: "late")
        let client = BrokerHarness.Client(transport: transport, connection: h.broker.accept(transport), broker: h.broker, version: .v5)
        // CONNECT, then SUBSCRIBE and a QoS 1 PUBLISH to itself before any CONNACK: allowed
        // [MQTT-3.1.4-5 non-normative: clients need not wait], and they must keep their order.
        client.send(.connect(MQTTConnect(version: .v5, clientID: "late", username: "u", password: ByteBuffer(string: "p"))))
        client.subscribe("held/#")
        client.publish("held/1", "first", qos: .atLeastOnce, id: 2)
        return (h, authenticator, client)
    }

    @Test("while the authenticator decides, nothing is answered and reading pauses; then the held packets run in order")
    func heldUntilAccepted() {
        let (_, authenticator, client) = Self.clientBeforeDecision()
        #expect(client.take().isEmpty)
        #expect(!client.transport.isReading)

        authenticator.decide(.success)
        #expect(client.transport.isReading)
        let packets = client.take()
        guard packets.count == 4, case .connack(let ack) = packets[0], case .suback = packets[1] else {
            Issue.record("expected CONNACK, SUBACK, then the PUBLISH and its PUBACK: \(packets)")
            return
        }
        #expect(ack.reasonCode == .success)
        #expect(packets.dropFirst(2).contains { if case .puback(let a) = $0 { a.packetID == 2 } else { false } })
        #expect(packets.dropFirst(2).contains { if case .publish(let p) = $0 { p.topic == "held/1" } else { false } })
    }

    @Test("a refusal answers CONNACK with the reason, closes, and the held packets are never handled")
    func refused() {
        let (h, authenticator, client) = Self.clientBeforeDecision()
        authenticator.decide(.badUserNameOrPassword)
        let packets = client.take()
        #expect(packets.count == 1)
        if case .connack(let ack) = packets.first { #expect(ack.reasonCode == .badUserNameOrPassword) } else { Issue.record("\(packets)") }
        #expect(client.transport.isClosed)
        #expect(h.broker.sessionCount == 0)
        #expect(h.broker.subscriptionCount == 0)
    }

    @Test("a connection that closes before the decision is left alone when it comes")
    func closedMeanwhile() {
        let (h, authenticator, client) = Self.clientBeforeDecision()
        h.broker.closed(client.connection)
        authenticator.decide(.success)
        #expect(client.take().isEmpty)
        #expect(h.broker.sessionCount == 0)
    }
}
