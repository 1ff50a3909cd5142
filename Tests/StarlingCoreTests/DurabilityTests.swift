import MQTTCodec
import NIOCore
import NIOPosix
import StarlingCore
import StarlingTesting
import Testing

/// G1 "acked means durable", on the broker core without sockets: CONNACK, SUBACK, PUBACK and
/// PUBREC are written only once the store has committed what they acknowledge, and never when
/// the commit fails.
@Suite("G1: acknowledgements follow the commit")
struct DurabilityTests {
    /// A broker on a real event loop whose writes go to an `InMemoryStore`; `body` runs its
    /// steps on that loop through `onLoop`.
    struct Loop {
        let loop: any EventLoop
        /// Runs `step` on the broker's loop and returns what it returns.
        func callAsFunction<T: Sendable>(_ step: @escaping @Sendable () -> T) async throws -> T {
            try await loop.submit(step).get()
        }
    }

    /// "sub" with a stored session (expiry 600 s) subscribed to s/# at QoS 2, and "pub"; on the
    /// broker's loop.
    static func qos2SubscriberAndPublisher(_ h: BrokerHarness) -> (subscriber: BrokerHarness.Client, publisher: BrokerHarness.Client) {
        let subscriber = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0
        subscriber.subscribe("s/#", qos: .exactlyOnce)
        _ = subscriber.take()
        return (subscriber, h.connect("pub").0)
    }

    /// The same through `onLoop`, their sessions committed.
    static func qos2SubscriberAndPublisher(_ h: BrokerHarness, _ onLoop: Loop) async throws -> (
        subscriber: BrokerHarness.Client, publisher: BrokerHarness.Client
    ) {
        let clients = try await onLoop { qos2SubscriberAndPublisher(h) }
        try await h.broker.persistence!.drain().get()
        return clients
    }

    static func withBroker(_ body: (BrokerHarness, InMemoryStore, _ onLoop: Loop) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let store = InMemoryStore()
        let harness = try await loop.submit { BrokerHarness(store: store, eventLoop: loop) }.get()
        do {
            try await body(harness, store, Loop(loop: loop))
        } catch {
            store.refuseCommits = false
            store.holdCommits = false
            store.releaseCommits()
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    static func types(_ packets: [MQTTPacket]) -> [MQTTPacketType] { packets.map(\.type) }

    /// Publishes with commits held: nothing is written until the commit is released, then the
    /// acknowledgement of `type`; returns what the store committed.
    static func expectAcknowledgementAfterCommit(
        _ h: BrokerHarness, _ store: InMemoryStore, _ onLoop: Loop, _ publisher: BrokerHarness.Client,
        _ type: MQTTPacketType, publish: @escaping @Sendable () -> Void
    ) async throws -> [StoreOperation] {
        store.holdCommits = true
        try await onLoop { publish() }
        var attempts = store.attempts.makeAsyncIterator()
        _ = await attempts.next()
        try await onLoop { #expect(publisher.take().isEmpty) }
        store.holdCommits = false
        store.releaseCommits()
        try await h.broker.persistence!.drain().get()
        try await onLoop { #expect(Self.types(publisher.take()) == [type]) }
        return store.committed
    }

    @Test("[MQTT-4.3.2] a QoS 1 PUBACK is written after the ingest row commits, not before")
    func pubackAfterCommit() async throws {
        try await Self.withBroker { h, store, onLoop in
            let publisher = try await onLoop { h.connect("pub").0 }
            let committed = try await Self.expectAcknowledgementAfterCommit(h, store, onLoop, publisher, .puback) {
                publisher.publish("sensors/1", "21.5", qos: .atLeastOnce, id: 1)
            }
            #expect(committed.contains { if case .ingest(let r) = $0 { r.payload == ByteBuffer(string: "21.5") } else { false } })
        }
    }

    @Test("[MQTT-4.3.3] a QoS 2 PUBREC is written after the row and the inbound entry commit")
    func pubrecAfterCommit() async throws {
        try await Self.withBroker { h, store, onLoop in
            let publisher = try await onLoop { h.connect("pub", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await h.broker.persistence!.drain().get()
            try await onLoop { _ = publisher.take() }
            let committed = try await Self.expectAcknowledgementAfterCommit(h, store, onLoop, publisher, .pubrec) {
                publisher.publish("sensors/2", "x", qos: .exactlyOnce, id: 9)
            }
            #expect(committed.contains(.addInboundQoS2(clientID: "pub", packetID: 9)))
        }
    }

    @Test(
        "[MQTT-4.3.3] a QoS 2 PUBLISH to a stored session is written once its packet id is committed with the row (a holder that did not know the id could give it to another message)",
        .timeLimit(.minutes(1)))
    func qos2PublishAfterItsPacketIDCommits() async throws {
        try await Self.withBroker { h, store, onLoop in
            let (sub, publisher) = try await Self.qos2SubscriberAndPublisher(h, onLoop)
            try await onLoop {
                _ = sub.take(); _ = publisher.take()
            }
            store.holdCommits = true
            try await onLoop { publisher.publish("s/1", "r1", qos: .exactlyOnce, id: 1) }
            var attempts = store.attempts.makeAsyncIterator()
            _ = await attempts.next()  // the message, its row and the publisher's inbound entry
            store.releaseCommits()
            _ = await attempts.next()  // the delivery's packet id
            try await onLoop { #expect(sub.publishes().isEmpty) }
            store.holdCommits = false
            store.releaseCommits()
            try await h.broker.persistence!.drain().get()
            let sent = try #require(try await onLoop { sub.publishes().first })
            #expect(
                store.committed.contains { operation in
                    if case .updateDelivery(clientID: "sub", _, state: .sent, packetID: sent.packetID) = operation { true } else { false }
                })
        }
    }

    @Test("CONNACK of a persistent session and SUBACK of its subscription follow their commits")
    func connackAndSubackAfterCommit() async throws {
        try await Self.withBroker { h, store, onLoop in
            store.holdCommits = true
            let (client, connack) = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]) }
            var attempts = store.attempts.makeAsyncIterator()
            _ = await attempts.next()
            #expect(connack == nil)
            try await onLoop { #expect(client.take().isEmpty) }
            store.releaseCommits()
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(Self.types(client.take()) == [.connack]) }
            try await onLoop { client.subscribe("a/#") }
            _ = await attempts.next()
            try await onLoop { #expect(client.take().isEmpty) }
            store.holdCommits = false
            store.releaseCommits()
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(Self.types(client.take()) == [.suback]) }
        }
    }

    @Test("a commit that fails sends no acknowledgement; the retry that succeeds sends it")
    func failedCommitSendsNothing() async throws {
        try await Self.withBroker { h, store, onLoop in
            let publisher = try await onLoop { h.connect("pub").0 }
            store.refuseCommits = true
            try await onLoop { publisher.publish("sensors/3", "y", qos: .atLeastOnce, id: 2) }
            var attempts = store.attempts.makeAsyncIterator()
            for _ in 0..<3 { _ = await attempts.next() }  // refused three times
            try await onLoop { #expect(publisher.take().isEmpty) }
            store.refuseCommits = false
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(Self.types(publisher.take()) == [.puback]) }
        }
    }

    /// Set on the broker's loop only.
    final class Flag: @unchecked Sendable { var value = false }

    @Test(
        "a session claimed by another node is acknowledged to it only once what this node acknowledged for the session is committed; a session not held here at once"
    )
    func claimAcknowledgedAfterCommit() async throws {
        try await Self.withBroker { h, store, onLoop in
            let publisher = try await onLoop {
                let (subscriber, _) = h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)])
                subscriber.subscribe("t/#")
                h.drop(subscriber)
                return h.connect("pub").0
            }
            try await h.broker.persistence!.drain().get()
            store.holdCommits = true
            try await onLoop {
                _ = publisher.take()
                publisher.publish("t/1", "reading", qos: .atLeastOnce, id: 1)
            }
            var attempts = store.attempts.makeAsyncIterator()
            _ = await attempts.next()
            // A session this node neither holds nor claims: answered at once, whatever waits.
            let bystander = Flag()
            try await onLoop { h.broker.sessionClaimedElsewhere("elsewhere", by: "n2", epoch: 1) { bystander.value = true } }
            try await onLoop { #expect(bystander.value) }
            let claimed = Flag()
            try await onLoop { h.broker.sessionClaimedElsewhere("sub", by: "n2", epoch: 1) { claimed.value = true } }
            // The claiming node would read the session now: not before the queued copy is in it.
            try await onLoop { #expect(!claimed.value && publisher.take().isEmpty) }
            store.holdCommits = false
            store.releaseCommits()
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(claimed.value && Self.types(publisher.take()) == [.puback]) }
            #expect(store.committed.contains { if case .saveDelivery(let d) = $0 { d.clientID == "sub" } else { false } })
        }
    }

    @Test(
        "in a cluster, the will of a connection whose session is not stored is committed before its CONNACK and deleted with the connection"
    )
    func connectionWillRow() async throws {
        try await Self.withBroker { h, store, onLoop in
            try await onLoop { h.broker.cluster = RecordingClusterBus() }
            let will = MQTTWill(topic: "status/dev", payload: ByteBuffer(string: "offline"), qos: .atLeastOnce)
            let dev = try await onLoop { h.connect("dev", version: .v3_1_1, will: will).0 }
            try await h.broker.persistence!.drain().get()
            let saved = store.committed.compactMap { if case .saveConnectionWill(let w) = $0 { w } else { nil } }
            #expect(saved.map(\.clientID) == ["dev"] && saved.first?.will == will)
            try await onLoop { #expect(Self.types(dev.take()) == [.connack]) }
            try await onLoop { dev.send(.disconnect(MQTTDisconnect())) }
            try await h.broker.persistence!.drain().get()
            #expect(store.committed.contains(.deleteConnectionWill(token: saved.first?.token ?? -1)))
            // A persistent session keeps its will in its own row: no connection will.
            _ = try await onLoop { h.connect("kept", version: .v3_1_1, cleanStart: false, will: will) }
            try await h.broker.persistence!.drain().get()
            #expect(store.committed.filter { if case .saveConnectionWill = $0 { true } else { false } }.count == 1)
        }
    }
}
