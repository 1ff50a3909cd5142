import MQTTCodec
import NIOCore
import NIOPosix
import StarlingCore
import StarlingTesting
import Testing

/// G2 and G4 under a freeze: what a connection sent is committed only while its claim still
/// holds the session, checked by the store inside the commit (README "What the cluster promises
/// under faults"). A node frozen past a takeover reads its clients' old packets when it resumes;
/// they must leave no row and get no acknowledgement.
@Suite("Fencing: a superseded connection commits nothing")
struct FencingTests {
    static func withClusterBroker(_ body: (BrokerHarness, InMemoryStore, DurabilityTests.Loop) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let store = InMemoryStore()
        let harness = try await loop.submit {
            let h = BrokerHarness(store: store, eventLoop: loop)
            let bus = RecordingClusterBus()
            bus.claimEpoch = 5
            h.broker.cluster = bus
            return h
        }.get()
        do {
            try await body(harness, store, DurabilityTests.Loop(loop: loop))
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// The client got no `type` packet and a DISCONNECT 0x8E, its connection closed and its session let go.
    static func expectLetGo(_ client: BrokerHarness.Client, without type: MQTTPacketType, in h: BrokerHarness) {
        let packets = client.take()
        #expect(!packets.contains { $0.type == type })
        guard case .disconnect(let disconnect) = packets.last else { Issue.record("no DISCONNECT: \(packets)"); return }
        #expect(disconnect.reasonCode == .sessionTakenOver && client.transport.isClosed)
        #expect(h.broker.session(client.connection.clientID) == nil)
    }

    /// "dev" connected with a stored session (expiry 600 s), its session committed.
    static func storedDevice(_ h: BrokerHarness, _ onLoop: DurabilityTests.Loop) async throws -> BrokerHarness.Client {
        let device = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
        try await h.broker.persistence!.drain().get()
        return device
    }

    static func ingested(_ store: InMemoryStore, _ payload: String) -> Int {
        store.committed.filter { if case .ingest(let r) = $0 { r.payload == ByteBuffer(string: payload) } else { false } }.count
    }

    @Test(
        "G2: a QoS 1 or 2 PUBLISH read after a later claim of its session: no row, no PUBACK or PUBREC, no inbound entry that would swallow the re-send the new owner stores; the connection closed (0x8E)",
        arguments: [MQTTQoS.atLeastOnce, .exactlyOnce])
    func stalePublish(qos: MQTTQoS) async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let device = try await Self.storedDevice(h, onLoop)
            // While this node could not tell (frozen), another node claimed the session.
            store.setClaimEpoch(6, of: "dev")
            try await onLoop { device.publish("s/1", "stale", qos: qos, id: 7) }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                Self.expectLetGo(device, without: qos == .atLeastOnce ? .puback : .pubrec, in: h)
                #expect(h.broker.stats.fencedCommits == 1)
            }
            #expect(Self.ingested(store, "stale") == 0)
            #expect(!store.committed.contains(.addInboundQoS2(clientID: "dev", packetID: 7)))
        }
    }

    @Test("G2: a device back on the node that still holds its session (no claim of its own) is fenced by the session's claim")
    func staleAfterReconnectToHolder() async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let first = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await h.broker.persistence!.drain().get()
            try await onLoop { h.drop(first) }
            try await h.broker.persistence!.drain().get()
            // The session is held here: the new connection takes it without a claim.
            let device = try await Self.storedDevice(h, onLoop)
            store.setClaimEpoch(6, of: "dev")
            try await onLoop { device.publish("s/1", "stale", qos: .atLeastOnce, id: 4) }
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(!device.take().contains { $0.type == .puback } && device.transport.isClosed) }
            #expect(Self.ingested(store, "stale") == 0)
        }
    }

    @Test(
        "[MQTT-4.3.3] a QoS 2 message committed to the spool (under a fence, or from a clean session): peers' stored sessions get it from the replayed rows, not live (the replay would insert the row a live copy's delivery had deleted)",
        arguments: [true, false])
    func spooledQoS2IsNotForwardedToStoredSessions(fenced: Bool) async throws {
        try await Self.withClusterBroker { h, _, onLoop in
            let device = try await onLoop {
                if fenced { return h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
                // A clean session that connected while the store was away needs no claim: no fence.
                h.broker.storeModeChanged(spooling: true, replaying: false)
                return h.connect("clean-dev").0
            }
            try await h.broker.persistence!.drain().get()
            let subscription = Subscription(MQTTSubscription(filter: try MQTTTopicFilter("s/#"), qos: .exactlyOnce), identifier: nil)
            try await onLoop {
                h.broker.directoryChanged([SessionDirectoryEntry(clientID: "sub", owner: "n2", subscriptions: [subscription], epoch: 1)])
                _ = device.take()
                h.broker.storeModeChanged(spooling: true, replaying: false)
                device.publish("s/1", "spooled", qos: .exactlyOnce, id: 3)
            }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                let bus = h.broker.cluster as? RecordingClusterBus
                #expect(device.take().contains { $0.type == .pubrec })
                #expect(bus?.forwards.contains { $0.deliveries.contains { $0.clientID == "sub" } } == false)
                // Direct again: the copy goes with the message, as always.
                h.broker.storeModeChanged(spooling: false, replaying: false)
                device.publish("s/1", "direct", qos: .exactlyOnce, id: 4)
            }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                let bus = h.broker.cluster as? RecordingClusterBus
                #expect(bus?.forwards.contains { $0.peer == "n2" && $0.deliveries.contains { $0.clientID == "sub" } } == true)
            }
        }
    }

    /// A QoS 2 delivery to a stored session, PUBREC'd while this node's writes go to its spool.
    static func releasedWhileSpooling(_ h: BrokerHarness, _ onLoop: DurabilityTests.Loop) async throws -> (BrokerHarness.Client, UInt16) {
        let (sub, publisher) = try await DurabilityTests.qos2SubscriberAndPublisher(h, onLoop)
        try await onLoop {
            _ = sub.take(); publisher.publish("s/1", "r1", qos: .exactlyOnce, id: 1)
        }
        try await h.broker.persistence!.drain().get()
        let packetID = try #require(try await onLoop { sub.publishes().first?.packetID })
        try await onLoop {
            h.broker.storeModeChanged(spooling: true, replaying: false)
            sub.send(.pubrec(MQTTAck(packetID: packetID)))
        }
        try await h.broker.persistence!.drain().get()
        try await onLoop { #expect(!sub.take().contains { $0.type == .pubrel }) }
        return (sub, packetID)
    }

    @Test("QoS 2 across a takeover: a PUBREL whose released state went to the spool waits; it goes out once the spool is replayed")
    func pubrelWaitsForTheSpool() async throws {
        try await Self.withClusterBroker { h, _, onLoop in
            let (sub, packetID) = try await Self.releasedWhileSpooling(h, onLoop)
            try await onLoop { h.broker.storeModeChanged(spooling: false, replaying: true) }
            try await onLoop { #expect(sub.take().isEmpty) }
            try await onLoop { h.broker.storeModeChanged(spooling: false, replaying: false) }
            try await onLoop { #expect(sub.take().map(\.type) == [.pubrel]) }
            try await onLoop { sub.send(.pubcomp(MQTTAck(packetID: packetID))) }
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(h.broker.session("sub")?.inflightCount == 0) }
        }
    }

    @Test(
        "[MQTT-4.3.3] a QoS 2 PUBLISH whose packet id is only in the spool waits for the replay, across a reconnect; it carries DUP only if it went out before [MQTT-3.3.1-1]",
        arguments: [false, true])
    func qos2PublishWaitsForTheSpool(sentBefore: Bool) async throws {
        try await Self.withClusterBroker { h, _, onLoop in
            let (sub, publisher) = try await DurabilityTests.qos2SubscriberAndPublisher(h, onLoop)
            try await onLoop {
                _ = sub.take()
                if !sentBefore { h.broker.storeModeChanged(spooling: true, replaying: false) }
                publisher.publish("s/1", "r1", qos: .exactlyOnce, id: 1)
            }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                #expect(sub.publishes().count == (sentBefore ? 1 : 0))
                h.broker.storeModeChanged(spooling: true, replaying: false)
            }
            // The client comes back while the node still spools: nothing goes out again yet.
            let again = try await onLoop { h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(again.publishes().isEmpty) }
            try await onLoop { h.broker.storeModeChanged(spooling: false, replaying: false) }
            let sent = try await onLoop { again.publishes() }
            #expect(sent.map(\.dup) == [sentBefore])
        }
    }

    @Test("QoS 2 across a takeover: a session taken over while its PUBREL waits never gets it from this node")
    func pubrelWithheldDiesWithTheSession() async throws {
        try await Self.withClusterBroker { h, _, onLoop in
            let (sub, _) = try await Self.releasedWhileSpooling(h, onLoop)
            try await onLoop { h.broker.sessionClaimedElsewhere("sub", by: "n2", epoch: 9) {} }
            try await onLoop { h.broker.storeModeChanged(spooling: false, replaying: false) }
            try await onLoop { #expect(!sub.take().contains { $0.type == .pubrel }) }
        }
    }

    @Test("while the claim holds, the same PUBLISH is stored and acknowledged; another client's writes in the batch are kept")
    func currentClaimCommits() async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let device = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            let other = try await onLoop { h.connect("other", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                _ = device.take(); _ = other.take()
            }
            store.setClaimEpoch(5, of: "dev")
            store.setClaimEpoch(8, of: "other")  // "other" was taken over; "dev" was not
            try await onLoop {
                device.publish("s/1", "fresh", qos: .atLeastOnce, id: 7)
                other.publish("s/1", "old", qos: .atLeastOnce, id: 1)
            }
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                #expect(DurabilityTests.types(device.take()) == [.puback])
                #expect(!other.take().contains { $0.type == .puback } && other.transport.isClosed)
            }
            #expect(Self.ingested(store, "fresh") == 1 && Self.ingested(store, "old") == 0)
        }
    }

    static func row(_ sequence: Int64, for clientID: String) -> (StoredMessage, StoredDelivery) {
        let message = StoredMessage(
            id: 500 + sequence, topic: "s/1", payload: ByteBuffer(string: "r\(sequence)"), qos: .atLeastOnce,
            retain: false, properties: [], expiresAt: nil, publisher: "pub")
        let delivery = StoredDelivery(
            clientID: clientID, sequence: sequence, messageID: message.id, qos: .atLeastOnce, retain: false,
            subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil)
        return (message, delivery)
    }

    @Test(
        "G7: rows a peer committed for a session held here whose copies never came are delivered by a pickup, once; a late copy is not delivered again"
    )
    func pickupDeliversLostCopies() async throws {
        try await Self.withClusterBroker { h, _, onLoop in
            let sub = try await Self.storedSubscriber(h, onLoop)
            let (message, delivery) = Self.row(7, for: "sub")
            // Not while this node's writes go to its spool (its deletes are not in the store).
            try await onLoop {
                h.broker.storeModeChanged(spooling: true, replaying: false)
                var asked = false
                h.broker.beginPickup { _ in asked = true }
                #expect(!asked)
                h.broker.storeModeChanged(spooling: false, replaying: false)
            }
            let asked = try await Self.pickUp(h, onLoop, [message], [delivery])
            #expect(asked == ["sub"])
            let first = try await onLoop { sub.publishes() }
            #expect(first.map { String(buffer: $0.payload) } == ["r7"])
            // The same row read again, and the peer's copy arriving late: not delivered twice.
            _ = try await Self.pickUp(h, onLoop, [message], [delivery])
            try await onLoop {
                let remote = RemoteDelivery(
                    clientID: "sub", sequence: 7, messageID: message.id, qos: .atLeastOnce, retain: false,
                    subscriptionIdentifiers: [])
                h.broker.receivedFromPeer(
                    Message(
                        topic: "s/1", payload: ByteBuffer(string: "r7"), qos: .atLeastOnce, retain: false,
                        publisher: "pub"), plain: false, groups: [], deliveries: [remote])
                h.broker.flush()
            }
            try await h.broker.persistence!.drain().get()
            #expect(try await onLoop { sub.publishes() }.isEmpty)
            // Acknowledged while a pickup reads: its row, still read, is not sent again.
            let packetID = try #require(first.first?.packetID)
            _ = try await Self.pickUp(h, onLoop, [message], [delivery]) { sub.send(.puback(MQTTAck(packetID: packetID))) }
            #expect(try await onLoop { sub.publishes() }.isEmpty)
        }
    }

    @Test(
        "G7: a pickup reads the store only once the deliveries that ended before it are deleted there (read earlier, their rows would be delivered again)"
    )
    func pickupReadsAfterEndedDeletes() async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let sub = try await Self.storedSubscriber(h, onLoop)
            let (message, delivery) = Self.row(7, for: "sub")
            _ = try await Self.pickUp(h, onLoop, [message], [delivery])
            let packetID = try #require(try await onLoop { sub.publishes().first?.packetID })
            store.holdCommits = true
            let read = AsyncStream<Bool>.makeStream()
            try await onLoop {
                sub.send(.puback(MQTTAck(packetID: packetID)))
                h.broker.beginPickup { _ in read.continuation.yield(store.committed.contains(.deleteDelivery(clientID: "sub", sequence: 7)))
                }
            }
            store.holdCommits = false
            store.releaseCommits()
            var reads = read.stream.makeAsyncIterator()
            #expect(await reads.next() == true)
        }
    }

    /// "sub": a stored session subscribed to s/# (QoS 1), its SUBACK taken.
    static func storedSubscriber(_ h: BrokerHarness, _ onLoop: DurabilityTests.Loop) async throws -> BrokerHarness.Client {
        let sub = try await onLoop { h.connect("sub", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
        try await onLoop { sub.subscribe("s/#") }
        try await h.broker.persistence!.drain().get()
        try await onLoop { _ = sub.take() }
        return sub
    }

    /// Runs a pickup whose read finds `messages` and `deliveries` (after `during` ran on the
    /// loop, as if while the store was read); returns the client ids it asked for.
    static func pickUp(
        _ h: BrokerHarness, _ onLoop: DurabilityTests.Loop, _ messages: [StoredMessage], _ deliveries: [StoredDelivery],
        during: @escaping @Sendable () -> Void = {}
    ) async throws -> [String] {
        let asked = AsyncStream<[String]>.makeStream()
        try await onLoop { h.broker.beginPickup { asked.continuation.yield($0) } }
        var iterator = asked.stream.makeAsyncIterator()
        let ids = await iterator.next() ?? []
        try await onLoop {
            during()
            h.broker.finishPickup(messages: messages, deliveries: deliveries)
        }
        try await h.broker.persistence!.drain().get()
        return ids
    }

    @Test(
        "G4, [MQTT-4.3.3]: a subscriber's PUBREC after a later claim of its session: no PUBREL and no \"released\" row (the new holder's PUBLISH, read as sent, completes the message once), the session let go"
    )
    func staleReleaseIsNotSent() async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let (subscriber, publisher) = try await onLoop { DurabilityTests.qos2SubscriberAndPublisher(h) }
            try await onLoop { publisher.publish("s/1", "m", qos: .exactlyOnce, id: 1) }
            try await h.broker.persistence!.drain().get()
            try await h.broker.persistence!.drain().get()
            let id = try await onLoop { subscriber.publishes().first?.packetID }
            let packetID = try #require(id)
            // Another node claimed the subscriber's session while this one could not tell (links cut).
            store.setClaimEpoch(6, of: "sub")
            try await onLoop { subscriber.send(.pubrec(MQTTAck(packetID: packetID))) }
            try await h.broker.persistence!.drain().get()
            try await onLoop { Self.expectLetGo(subscriber, without: .pubrel, in: h) }
            #expect(!store.committed.contains { if case .updateDelivery(_, _, .released, _) = $0 { true } else { false } })
        }
    }

    @Test(
        "G4, [MQTT-4.3.3]: a QoS 2 delivery to a session a later claim holds: no PUBLISH under a packet id the new holder does not know, the session let go"
    )
    func staleQoS2DeliveryIsNotSent() async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let (subscriber, publisher) = try await onLoop { DurabilityTests.qos2SubscriberAndPublisher(h) }
            try await h.broker.persistence!.drain().get()
            store.setClaimEpoch(6, of: "sub")
            try await onLoop { publisher.publish("s/1", "m", qos: .exactlyOnce, id: 1) }
            try await h.broker.persistence!.drain().get()
            try await h.broker.persistence!.drain().get()
            try await onLoop {
                let packets = subscriber.take()
                #expect(!packets.contains { $0.type == .publish })
                #expect(subscriber.transport.isClosed && h.broker.session("sub") == nil)
            }
            #expect(!store.committed.contains { if case .updateDelivery(_, _, .sent, _) = $0 { true } else { false } })
        }
    }

    @Test(
        "G2, [MQTT-4.3.3]: a PUBLISH whose commit the store leaves out (a later claim, or a QoS 2 entry another node stored after this node read the session): no acknowledgement, no row, and no copy for a subscriber here once a later commit makes its queue durable",
        arguments: [false, true])
    func leftOutPublishReachesNoSubscriber(repeatedQoS2: Bool) async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let sub = try await Self.storedSubscriber(h, onLoop)
            let device = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            let other = try await onLoop { h.connect("dev2", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await h.broker.persistence!.drain().get()
            // The old holder's replay stored packet 3 (re-sent here, read here before the replay),
            // or another node claimed the session while this one could not tell.
            if repeatedQoS2 { store.addInboundEntry(3, of: "dev") } else { store.setClaimEpoch(6, of: "dev") }
            try await onLoop { device.publish("s/2", "left out", qos: .exactlyOnce, id: 3) }
            try await h.broker.persistence!.drain().get()
            try await onLoop { Self.expectLetGo(device, without: .pubrec, in: h) }
            #expect(Self.ingested(store, "left out") == 0)
            try await onLoop { other.publish("s/3", "fresh", qos: .atLeastOnce, id: 1) }
            try await h.broker.persistence!.drain().get()
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(sub.publishes().map { String(buffer: $0.payload) } == ["fresh"]) }
        }
    }

    @Test(
        "G1: after a later claim of the session, a QoS 2 PUBLISH under a packet id the session here still holds gets no PUBREC (the client may have released the id on the new holder and used it for a new message) and a PUBREL no PUBCOMP (the holder still holds the id: the entry is kept); the session let go",
        arguments: [false, true])
    func staleAnswersAboutAPacketID(release: Bool) async throws {
        try await Self.withClusterBroker { h, store, onLoop in
            let device = try await onLoop { h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)]).0 }
            try await onLoop { device.publish("s/2", "first", qos: .exactlyOnce, id: 3) }
            try await h.broker.persistence!.drain().get()
            try await onLoop { #expect(device.take().contains { $0.type == .pubrec }) }
            store.setClaimEpoch(6, of: "dev")
            try await onLoop {
                if release {
                    device.send(.pubrel(MQTTAck(packetID: 3)))
                } else {
                    device.publish("s/2", "new under the same id", qos: .exactlyOnce, id: 3)
                }
            }
            try await h.broker.persistence!.drain().get()
            try await onLoop { Self.expectLetGo(device, without: release ? .pubcomp : .pubrec, in: h) }
            #expect(!store.committed.contains(.removeInboundQoS2(clientID: "dev", packetID: 3)))
        }
    }

    @Test(
        "the QoS 2 entries a batch adds as new under live fences: not those it released or reset first, not spooled ones, not unfenced ones"
    )
    func newInboundQoS2() {
        let live = SessionFence(clientID: "a", epoch: 5)
        let spooled = SessionFence(clientID: "b", epoch: 5, spooledAt: 1_000)
        let other = SessionFence(clientID: "c", epoch: 2)
        let found = StoreOperation.newInboundQoS2(in: [
            .removeInboundQoS2(clientID: "a", packetID: 1),
            .fenced(live, [.addInboundQoS2(clientID: "a", packetID: 1), .addInboundQoS2(clientID: "a", packetID: 2)]),
            .fenced(spooled, [.addInboundQoS2(clientID: "b", packetID: 1)]),
            .addInboundQoS2(clientID: "d", packetID: 1),
            .deleteSession(clientID: "c"),
            .fenced(other, [.addInboundQoS2(clientID: "c", packetID: 7)])
        ])
        #expect(found.map(\.fence) == [live])
        #expect(found.map(\.key) == [StoreBatch.InboundKey(clientID: "a", packetID: 2)])
        let held: Set = [StoreBatch.InboundKey(clientID: "a", packetID: 2)]
        #expect(StoreOperation.repeatedQoS2(found, held: held) == [live])
        #expect(StoreOperation.repeatedQoS2(found, held: []).isEmpty)
    }
}
