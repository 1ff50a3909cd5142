import MQTTCodec
import NIOCore
import StarlingCore
import StarlingTesting
import Testing

@Suite("Broker state machines (manual clock, no sockets)")
struct BrokerStateTests {
    @Test("[MQTT-3.1.0-1] a first packet other than CONNECT closes the connection")
    func firstPacketMustBeConnect() {
        let h = BrokerHarness()
        let transport = RecordingTransport()
        let connection = h.broker.accept(transport)
        h.broker.received(.pingreq, on: connection)
        #expect(transport.isClosed)
    }

    @Test("[MQTT-3.1.2-22] keep alive is enforced at one and a half times its value, 5.0 gets 0x8D")
    func keepAlive() {
        let h = BrokerHarness()
        let (client, ack) = h.connect("k", keepAlive: 10)
        #expect(ack?.reasonCode == .success)
        h.advance(seconds: 14)
        #expect(!client.transport.isClosed)
        client.send(.pingreq)
        #expect(client.take() == [.pingresp])
        h.advance(seconds: 14)  // 14 s after the PINGREQ: still within 15 s
        #expect(!client.transport.isClosed)
        h.advance(seconds: 1)
        #expect(client.transport.isClosed)
        #expect(client.take().contains { if case .disconnect(let d) = $0 { d.reasonCode == .keepAliveTimeout } else { false } })
    }

    @Test("[MQTT-3.2.2-21] max_keepalive is returned as Server Keep Alive to 5.0 and refuses 3.1.1")
    func maxKeepAlive() {
        let h = BrokerHarness { $0.maxKeepAlive = 60 }
        let (_, ack5) = h.connect("a", keepAlive: 120)
        #expect(ack5?.properties.serverKeepAlive == 60)
        let (_, ack0) = h.connect("b", keepAlive: 0)
        #expect(ack0?.properties.serverKeepAlive == 60)
        let (_, ack3) = h.connect("c", version: .v3_1_1, keepAlive: 120)
        #expect(ack3?.reasonCode == .clientIdentifierNotValid)
        let (_, ok) = h.connect("d", version: .v3_1_1, keepAlive: 30)
        #expect(ok?.reasonCode == .success)
    }

    @Test("a connection that never sends CONNECT is closed after connect_timeout")
    func connectTimeout() {
        let h = BrokerHarness { $0.connectTimeout = 5 }
        let transport = RecordingTransport()
        _ = h.broker.accept(transport)
        h.advance(seconds: 4)
        #expect(!transport.isClosed)
        h.advance(seconds: 1)
        #expect(transport.isClosed)
    }

    @Test(
        "[MQTT-3.3.4-2][MQTT-3.8.4-8] QoS is the minimum of published and subscribed; overlapping subscriptions give one copy at the highest QoS with every identifier"
    )
    func overlapping() {
        let h = BrokerHarness()
        let (sub, _) = h.connect("sub")
        sub.subscribe("a/+", qos: .atMostOnce, id: 1, properties: [.subscriptionIdentifier(7)])
        sub.subscribe("a/#", qos: .atLeastOnce, id: 2, properties: [.subscriptionIdentifier(9)])
        _ = sub.take()
        let (pub, _) = h.connect("pub")
        pub.publish("a/b", "x", qos: .exactlyOnce, id: 5)
        let received = sub.publishes()
        #expect(received.count == 1)
        #expect(received.first?.qos == .atLeastOnce)
        #expect(Set(received.first?.properties.subscriptionIdentifiers ?? []) == [7, 9])
    }

    @Test("[MQTT-4.9.0-2] the in-flight window holds further messages until acknowledgements arrive, in order")
    func inflightWindow() {
        let h = BrokerHarness { $0.maxInflight = 2 }
        let sub = h.subscriber("sub", to: "t", qos: .atLeastOnce)
        let (pub, _) = h.connect("pub")
        for i in 1...5 { pub.publish("t", "\(i)", qos: .atLeastOnce, id: UInt16(i)) }
        var first = sub.publishes()
        #expect(first.map { String(buffer: $0.payload) } == ["1", "2"])
        sub.send(.puback(MQTTAck(packetID: first[0].packetID!)))
        first = sub.publishes()
        #expect(first.map { String(buffer: $0.payload) } == ["3"])
        #expect(h.broker.session("sub")?.queuedCount == 2)
    }

    @Test("[MQTT-4.3.3-10] a re-sent QoS 2 PUBLISH before PUBREL is not delivered again")
    func qos2Duplicate() {
        let h = BrokerHarness()
        let sub = h.subscriber("sub", to: "t", qos: .exactlyOnce)
        let (pub, _) = h.connect("pub")
        pub.publish("t", "once", qos: .exactlyOnce, id: 3)
        #expect(pub.take() == [.pubrec(MQTTAck(packetID: 3))])
        pub.publish("t", "once", qos: .exactlyOnce, id: 3, dup: true)
        #expect(pub.take() == [.pubrec(MQTTAck(packetID: 3))])
        #expect(sub.publishes().count == 1)
        pub.send(.pubrel(MQTTAck(packetID: 3)))
        #expect(pub.take() == [.pubcomp(MQTTAck(packetID: 3))])
        // After PUBCOMP the id is free: the same id is a new message.
        pub.publish("t", "again", qos: .exactlyOnce, id: 3)
        #expect(sub.publishes().count == 1)
    }

    @Test("[MQTT-4.4.0-1] unacknowledged messages are re-sent with DUP on session resume; PUBREL is re-sent for released ones")
    func resumeResends() {
        let h = BrokerHarness()
        let (sub, _) = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(100)])
        sub.subscribe("t", qos: .exactlyOnce)
        _ = sub.take()
        let (pub, _) = h.connect("pub")
        pub.publish("t", "a", qos: .atLeastOnce, id: 1)
        pub.publish("t", "b", qos: .exactlyOnce, id: 2)
        let sent = sub.publishes()
        #expect(sent.count == 2)
        sub.send(.pubrec(MQTTAck(packetID: sent[1].packetID!)))
        #expect(sub.take() == [.pubrel(MQTTAck(packetID: sent[1].packetID!))])
        h.drop(sub)
        let (again, ack) = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(100)])
        #expect(ack?.sessionPresent == true)
        let resent = again.take()
        #expect(resent.count == 2)
        if case .publish(let p) = resent[0] {
            #expect(p.dup && p.packetID == sent[0].packetID && String(buffer: p.payload) == "a")
        } else {
            Issue.record("expected PUBLISH first, got \(resent[0])")
        }
        #expect(resent[1] == .pubrel(MQTTAck(packetID: sent[1].packetID!)))
    }

    @Test("[MQTT-3.1.3-9] the will waits for its delay and is cancelled by a reconnect")
    func willDelay() {
        let h = BrokerHarness()
        let watcher = h.subscriber("watcher", to: "will/#", qos: .atMostOnce)
        let will = MQTTWill(topic: "will/a", payload: ByteBuffer(string: "gone"), properties: [.willDelayInterval(30)])
        let (a, _) = h.connect("a", cleanStart: false, properties: [.sessionExpiryInterval(300)], will: will)
        h.drop(a)
        h.advance(seconds: 20)
        #expect(watcher.publishes().isEmpty)
        _ = h.connect("a", cleanStart: false, properties: [.sessionExpiryInterval(300)])
        h.advance(seconds: 20)
        #expect(watcher.publishes().isEmpty)

        let (b, _) = h.connect(
            "b", cleanStart: false, properties: [.sessionExpiryInterval(300)],
            will: MQTTWill(topic: "will/b", payload: ByteBuffer(string: "gone"), properties: [.willDelayInterval(30)]))
        h.drop(b)
        h.advance(seconds: 29)
        #expect(watcher.publishes().isEmpty)
        h.advance(seconds: 1)
        #expect(watcher.publishes().map(\.topic) == ["will/b"])
    }

    @Test("[MQTT-3.1.2-23] a session with an expiry interval ends when it runs out, and its will goes with it")
    func sessionExpiry() {
        let h = BrokerHarness()
        let watcher = h.subscriber("watcher", to: "will/#", qos: .atMostOnce)
        let (a, _) = h.connect(
            "a", cleanStart: false, properties: [.sessionExpiryInterval(10)],
            will: MQTTWill(topic: "will/a", payload: ByteBuffer(string: "x"), properties: [.willDelayInterval(60)]))
        a.subscribe("t")
        h.drop(a)
        #expect(h.broker.session("a") != nil)
        h.advance(seconds: 10)
        #expect(h.broker.session("a") == nil)
        #expect(watcher.publishes().map(\.topic) == ["will/a"])
        #expect(h.broker.subscriptionCount == 1)
    }

    @Test("a full queue drops the oldest QoS 0 first, then refuses new messages, counting every drop")
    func queueLimit() {
        let h = BrokerHarness {
            $0.maxInflight = 1; $0.maxQueuedMessages = 2
        }
        let sub = h.subscriber("sub", to: "t", qos: .atLeastOnce)
        let (pub, _) = h.connect("pub")
        pub.publish("t", "inflight", qos: .atLeastOnce, id: 1)
        sub.transport.isWritable = false
        pub.publish("t", "q0", qos: .atMostOnce)
        pub.publish("t", "q1", qos: .atLeastOnce, id: 2)
        pub.publish("t", "q1b", qos: .atLeastOnce, id: 3)  // drops "q0"
        pub.publish("t", "q1c", qos: .atLeastOnce, id: 4)  // queue full of QoS 1: refused
        #expect(h.broker.stats.messagesDropped == 2)
        #expect(h.broker.session("sub")?.queuedCount == 2)
    }

    @Test("a flush that re-enters the broker from inside a write never leaves a connection unflushed")
    func reentrantFlush() {
        let h = BrokerHarness()
        let sub = h.subscriber("sub", to: "t", qos: .atMostOnce)
        // NIO reports lost writability from inside a write; the handler may flush then.
        sub.transport.onWrite = { h.broker.flush() }
        let (pub, _) = h.connect("pub")
        pub.publish("t", "1")
        pub.publish("t", "2")
        sub.transport.onWrite = nil
        #expect(sub.publishes().map { String(buffer: $0.payload) } == ["1", "2"])
    }

    @Test("[MQTT-3.1.4-3] a second connection with the same client id takes over: the first gets 0x8E")
    func takeover() {
        let h = BrokerHarness()
        let (first, _) = h.connect("same")
        let (_, ack) = h.connect("same")
        #expect(ack?.reasonCode == .success)
        #expect(first.transport.isClosed)
        #expect(first.take() == [.disconnect(MQTTDisconnect(reasonCode: .sessionTakenOver))])
    }

    /// Members a and b of `$share/g/t` under `strategy`, and a publisher.
    static func sharedGroup(_ strategy: BrokerConfiguration.SharedStrategy, qos: MQTTQoS) -> (
        BrokerHarness, BrokerHarness.Client, BrokerHarness.Client, BrokerHarness.Client
    ) {
        let h = BrokerHarness { $0.sharedStrategy = strategy }
        let a = h.subscriber("a", to: "$share/g/t", qos: qos)
        let b = h.subscriber("b", to: "$share/g/t", qos: qos)
        return (h, a, b, h.connect("pub").0)
    }

    @Test("[MQTT-4.8.2] round_robin gives each message to one member in turn")
    func sharedRoundRobin() {
        let (_, a, b, pub) = Self.sharedGroup(.roundRobin, qos: .atMostOnce)
        for i in 0..<4 { pub.publish("t", "\(i)") }
        #expect(a.publishes().count == 2)
        #expect(b.publishes().count == 2)
    }

    @Test("[MQTT-4.8.2-5] a QoS 1 message in flight to a member whose session ends goes to another member")
    func sharedRedispatch() {
        let (h, a, b, pub) = Self.sharedGroup(.hashTopic, qos: .atLeastOnce)
        pub.publish("t", "m", qos: .atLeastOnce, id: 1)
        let gotA = a.publishes(), gotB = b.publishes()
        #expect(gotA.count + gotB.count == 1)
        let (holder, other) = gotA.isEmpty ? (b, a) : (a, b)
        h.drop(holder)
        #expect(other.publishes().map { String(buffer: $0.payload) } == ["m"])
    }

    @Test("[MQTT-3.3.1-10] an empty retained payload deletes the retained message")
    func retainedDelete() {
        let h = BrokerHarness()
        let (pub, _) = h.connect("pub")
        pub.publish("r", "v1", retain: true)
        pub.publish("r", "v2", retain: true)
        #expect(h.broker.retainedCount == 1)
        let (sub, _) = h.connect("sub")
        sub.subscribe("r", qos: .atMostOnce)
        let got = sub.publishes()
        #expect(got.map { String(buffer: $0.payload) } == ["v2"])
        #expect(got.first?.retain == true)
        pub.publish("r", "", retain: true)
        #expect(h.broker.retainedCount == 0)
    }

    @Test("[MQTT-3.3.2-6] the Message Expiry Interval forwarded is what is left of it; expired messages are not delivered")
    func messageExpiry() {
        let h = BrokerHarness()
        let (sub, _) = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(100)])
        sub.subscribe("t", qos: .atLeastOnce)
        h.drop(sub)
        let (pub, _) = h.connect("pub")
        pub.publish("t", "short", qos: .atLeastOnce, id: 1, properties: [.messageExpiryInterval(5)])
        pub.publish("t", "long", qos: .atLeastOnce, id: 2, properties: [.messageExpiryInterval(60)])
        h.advance(seconds: 10)
        let (again, _) = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(100)])
        let got = again.publishes()
        #expect(got.map { String(buffer: $0.payload) } == ["long"])
        #expect(got.first?.properties.messageExpiryInterval == 50)
    }
}
