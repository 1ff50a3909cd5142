import MQTTCodec
import NIOCore
import StarlingCore
import StarlingTesting
import Testing

/// Two steps: "hello" → continue with "challenge"; "answer" → success with "welcome".
final class ChallengeExchange: EnhancedAuthentication {
    var steps = 0
    func step(_ data: ByteBuffer?) -> EnhancedAuthenticationStep {
        steps += 1
        let text = data.map { String(decoding: $0.readableBytesView, as: UTF8.self) }
        switch (steps, text) {
        case (1, "hello"): return .continue(ByteBuffer(string: "challenge"))
        case (2, "answer"): return .success(ByteBuffer(string: "welcome"))
        default: return .failure(.notAuthorized)
        }
    }
}

struct ChallengeAuthenticator: EnhancedAuthenticator {
    func authenticate(_: AuthenticationRequest) -> AuthenticationDecision { .decided(.success) }
    func beginExchange(method: String, request _: AuthenticationRequest) -> (any EnhancedAuthentication)? {
        method == "CHALLENGE" ? ChallengeExchange() : nil
    }
}

@Suite("Enhanced authentication [MQTT-4.12]")
struct EnhancedAuthenticationTests {
    static func auth(_ reason: MQTTReasonCode, _ data: String, method: String = "CHALLENGE") -> MQTTPacket {
        .auth(MQTTAuth(reasonCode: reason, properties: [.authenticationMethod(method), .authenticationData(ByteBuffer(string: data))]))
    }

    static func start(_ h: BrokerHarness, method: String = "CHALLENGE", data: String = "hello") -> BrokerHarness.Client {
        let transport = RecordingTransport(remoteAddress: "enhanced")
        let client = BrokerHarness.Client(transport: transport, connection: h.broker.accept(transport), broker: h.broker, version: .v5)
        client.send(
            .connect(
                MQTTConnect(
                    version: .v5, clientID: "enhanced",
                    properties: [.authenticationMethod(method), .authenticationData(ByteBuffer(string: data))])))
        return client
    }

    @Test("CONNECT, AUTH 0x18 both ways, then CONNACK with the method and the last data; re-authentication ends in AUTH 0x00")
    func exchange() {
        let h = BrokerHarness(authenticator: ChallengeAuthenticator())
        let client = Self.start(h)
        #expect(client.take() == [Self.auth(.continueAuthentication, "challenge")])
        client.send(Self.auth(.continueAuthentication, "answer"))
        guard case .connack(let ack) = client.take().first else {
            Issue.record("no CONNACK")
            return
        }
        #expect(ack.reasonCode == .success)
        #expect(ack.properties.authenticationMethod == "CHALLENGE")
        #expect(ack.properties.authenticationData == ByteBuffer(string: "welcome"))

        client.send(Self.auth(.reAuthenticate, "hello"))
        #expect(client.take() == [Self.auth(.continueAuthentication, "challenge")])
        client.send(Self.auth(.continueAuthentication, "answer"))
        #expect(client.take() == [Self.auth(.success, "welcome")])
        #expect(!client.transport.isClosed)
    }

    @Test("a failed exchange is refused with its reason; an unknown method with 0x8C")
    func refusals() {
        let h = BrokerHarness(authenticator: ChallengeAuthenticator())
        let wrong = Self.start(h)
        _ = wrong.take()
        wrong.send(Self.auth(.continueAuthentication, "guess"))
        if case .connack(let ack) = wrong.take().first { #expect(ack.reasonCode == .notAuthorized) } else { Issue.record("no CONNACK") }
        #expect(wrong.transport.isClosed)

        let unknown = Self.start(h, method: "OTHER")
        if case .connack(let ack) = unknown.take().first {
            #expect(ack.reasonCode == .badAuthenticationMethod)
        } else {
            Issue.record("no CONNACK")
        }
        #expect(h.broker.sessionCount == 0)
    }

    @Test("[MQTT-4.12.0-5] AUTH with another method, or another packet before the CONNACK, is a protocol error")
    func outOfSequence() {
        let h = BrokerHarness(authenticator: ChallengeAuthenticator())
        let other = Self.start(h)
        _ = other.take()
        other.send(Self.auth(.continueAuthentication, "answer", method: "ELSE"))
        #expect(other.transport.isClosed)

        let eager = Self.start(h)
        _ = eager.take()
        eager.send(.pingreq)
        if case .connack(let ack) = eager.take().first { #expect(ack.reasonCode == .protocolError) } else { Issue.record("no CONNACK") }
        #expect(eager.transport.isClosed)
    }
}
