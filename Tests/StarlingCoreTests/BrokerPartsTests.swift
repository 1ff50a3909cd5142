import MQTTCodec
import NIOCore
import StarlingTesting
import Testing

@testable import StarlingCore

/// The broker's parts that keep state of their own (docs/architecture.md "Map"), each alone.
@Suite("Broker parts")
struct BrokerPartsTests {
    static func message(topic: String = "t", publisher: String = "p") -> Message {
        Message(topic: topic, payload: ByteBuffer(), qos: .atLeastOnce, retain: false, publisher: publisher)
    }

    static func subscription(_ filter: String) -> Subscription {
        Subscription(MQTTSubscription(filter: try! MQTTTopicFilter(filter), qos: .atLeastOnce), identifier: nil)
    }

    @Test("routes: the first subscription to a filter adds a route, the last removes it; changes announced once")
    func routeTable() {
        var routes = RouteTable()
        routes.add("a/#", announcing: true)
        routes.add("a/#", announcing: true)
        routes.add("b", announcing: true)
        var changes = routes.takeChanges()
        #expect(Set(changes.added) == ["a/#", "b"] && changes.removed.isEmpty)
        routes.remove("a/#", announcing: true)
        #expect(routes.takeChanges().removed.isEmpty)  // one subscriber is left
        routes.remove("a/#", announcing: true)
        routes.add("c", announcing: true)
        routes.remove("c", announcing: true)  // added and removed within one event: neither
        changes = routes.takeChanges()
        #expect(changes.removed == ["a/#"] && changes.added.isEmpty)
        #expect(routes.all == ["b"])
    }

    @Test("routes are counted before a cluster exists, and not announced")
    func routesWithoutCluster() {
        var routes = RouteTable()
        routes.add("x", announcing: false)
        #expect(routes.takeChanges().added.isEmpty)
        #expect(routes.all == ["x"])
    }

    @Test("shared groups: round robin takes turns, sticky keeps its member while it is there, hashes are stable")
    func sharedGroupChooser() {
        let group = ShareGroupKey(name: "g", filter: "t")
        var roundRobin = SharedGroupChooser(strategy: .roundRobin)
        let turns = (0..<4).map { _ in roundRobin.member(of: group, from: ["a", "b"], message: Self.message()) }
        #expect(turns == ["b", "a", "b", "a"])
        #expect(roundRobin.node(for: group, from: ["n1", "n2"], message: Self.message()) == "n2")  // its own counter

        var sticky = SharedGroupChooser(strategy: .sticky)
        let first = sticky.member(of: group, from: ["a", "b", "c"], message: Self.message())!
        #expect(sticky.member(of: group, from: ["a", "b", "c"], message: Self.message()) == first)
        let others = ["a", "b", "c"].filter { $0 != first }
        #expect(others.contains(sticky.member(of: group, from: others, message: Self.message())!))

        var byClient = SharedGroupChooser(strategy: .hashClientID)
        let chosen = byClient.member(of: group, from: ["a", "b", "c"], message: Self.message(publisher: "device-7"))
        #expect(byClient.member(of: group, from: ["a", "b", "c"], message: Self.message(publisher: "device-7")) == chosen)
        #expect(byClient.member(of: group, from: [], message: Self.message()) == nil)
    }

    @Test("the directory: subscriptions indexed by filter, shared ones left to routes, an ended session forgotten")
    func sessionDirectory() {
        let directory = SessionDirectory()
        directory.set(
            SessionDirectoryEntry(
                clientID: "s1", owner: "n2", subscriptions: [Self.subscription("a/+"), Self.subscription("$share/g/a/b")]))
        directory.set(SessionDirectoryEntry(clientID: "s2", owner: nil, subscriptions: [Self.subscription("a/#")]))
        #expect(Set(directory.matches("a/b").keys) == ["s1", "s2"])
        #expect(directory.matches("a/b")["s1"]?.map(\.filter.raw) == ["a/+"])
        #expect(directory.entries(ownedBy: "n2").map(\.clientID) == ["s1"])
        // New subscriptions replace the old ones.
        directory.set(SessionDirectoryEntry(clientID: "s1", owner: "n3", subscriptions: [Self.subscription("z")]))
        #expect(Set(directory.matches("a/b").keys) == ["s2"])
        directory.forget("s2")
        #expect(directory.matches("a/b").isEmpty)
        #expect(directory["s2"] == nil && directory["s1"]?.owner == "n3")
        directory.set(SessionDirectoryEntry(clientID: "s1", owner: nil, subscriptions: nil))  // ended
        #expect(directory.isEmpty)
    }

    @Test("an event's writes: what a connection sent since a mark goes under its fence; taking them empties them; ids grow")
    func pendingWrites() {
        var writes = PendingWrites()
        writes.append(.deleteSession(clientID: "before"))
        let mark = writes.count
        let nothing = writes.fence(from: mark, with: SessionFence(clientID: "a", epoch: 3))
        #expect(!nothing)  // nothing since the mark
        writes.append(contentsOf: [.deleteSession(clientID: "x"), .deleteSession(clientID: "y")])
        let fenced = writes.fence(from: mark, with: SessionFence(clientID: "a", epoch: 3))
        #expect(fenced)
        #expect(writes.count == 2)
        guard case .fenced(let fence, let guarded) = writes.operations[1] else {
            Issue.record("not fenced: \(writes.operations)")
            return
        }
        #expect(fence == SessionFence(clientID: "a", epoch: 3) && guarded.count == 2)
        let session = Session(clientID: "s", version: .v5, expiryInterval: 0)
        writes.awaitCommit(of: session, sequence: 9)
        let taken = writes.take()
        #expect(taken.operations.count == 2 && taken.awaiting.map(\.sequence) == [9] && taken.awaiting[0].session === session)
        let again = writes.take()
        #expect(writes.count == 0 && again.operations.isEmpty && again.awaiting.isEmpty)
        writes.lastID = 41
        let ids = [writes.nextID(), writes.nextID()]
        #expect(ids == [42, 43])
    }

    @Test("a throttled count reports at most once per interval, with everything counted since")
    func throttledCount() {
        var drops = ThrottledCount(interval: .seconds(10))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(drops.add(2, now: start) == 2)
        #expect(drops.add(3, now: start + .seconds(5)) == nil)
        #expect(drops.add(1, now: start + .seconds(9)) == nil)
        #expect(drops.add(1, now: start + .seconds(10)) == 5)
        #expect(drops.add(1, now: start + .seconds(11)) == nil)
    }
}

@Suite("Sessions restored from rows")
struct RestoredSessionsTests {
    @Test("a session the rows say connected lost its connection now: expiry and will run from the restore")
    func connectedSessionEndsNow() {
        let clock = ManualClock()
        var state = StoredState()
        let will = MQTTWill(topic: "w", payload: ByteBuffer(string: "gone"), properties: [.willDelayInterval(30)])
        state.sessions = [
            StoredSession(clientID: "a", version: .v5, expiryInterval: 60, connected: true, will: will),
            StoredSession(clientID: "b", version: .v3_1_1, expiryInterval: .max, connected: false, will: will)
        ]
        let restored = RestoredSessions(state, now: clock.now(), clock: clock)
        let a = restored.sessions.first { $0.clientID == "a" }!
        #expect(a.isStored && a.expiresAt == clock.now() + .seconds(60) && a.willDueAt == clock.now() + .seconds(30))
        // Disconnected without a will due: the will is not kept.
        let b = restored.sessions.first { $0.clientID == "b" }!
        #expect(b.expiresAt == nil && b.will == nil)
    }

    @Test("queued and in-flight deliveries in their states, read from the store; QoS 2 entries of other clients apart")
    func deliveries() {
        let clock = ManualClock()
        var state = StoredState()
        state.sessions = [StoredSession(clientID: "a", version: .v5, expiryInterval: 60, connected: false)]
        state.subscriptions = [StoredSubscription(clientID: "a", subscription: BrokerPartsTests.subscription("t/#"))]
        state.messages = [
            StoredMessage(
                id: 7, topic: "t/1", payload: ByteBuffer(string: "x"), qos: .exactlyOnce, retain: false, properties: [], expiresAt: nil,
                publisher: "p")
        ]
        state.deliveries = [
            StoredDelivery(
                clientID: "a", sequence: 3, messageID: 7, qos: .exactlyOnce, retain: false, subscriptionIdentifiers: [], shareGroup: nil,
                state: .released, packetID: 12),
            StoredDelivery(
                clientID: "a", sequence: 4, messageID: 7, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [], shareGroup: nil,
                state: .queued, packetID: nil),
            StoredDelivery(
                clientID: "a", sequence: 5, messageID: 99, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [], shareGroup: nil,
                state: .queued, packetID: nil)  // its message is gone: skipped
        ]
        state.inboundQoS2 = [("a", 1), ("z", 2)]
        let restored = RestoredSessions(state, now: clock.now(), clock: clock)
        let a = restored.sessions[0]
        #expect(a.subscriptions.keys.sorted() == ["t/#"])
        #expect(a.inflightOrder == [12] && a.inflight[12]?.stage == .released && a.nextPacketID == 13)
        #expect(a.queue.map(\.sequence) == [4] && a.queue.first?.message.storeID == 7)
        #expect(a.nextSequence == 5 && a.readFromStore.keys.sorted() == [3, 4])
        #expect(a.inboundQoS2 == [1] && restored.otherQoS2.map(\.clientID) == ["z"])
        #expect(restored.maxMessageID == 99)
    }

    @Test(
        "[MQTT-4.3.3] two rows giving a session one QoS 2 message (a batch in doubt replayed under another sequence): the lower is restored, the other reported for deletion; QoS 1 rows are left alone"
    )
    func secondRowOfAQoS2Message() {
        let clock = ManualClock()
        var state = StoredState()
        state.sessions = [StoredSession(clientID: "a", version: .v5, expiryInterval: 60, connected: false)]
        state.messages = [7, 8].map {
            StoredMessage(
                id: $0, topic: "t/\($0)", payload: ByteBuffer(string: "x"), qos: $0 == 7 ? .exactlyOnce : .atLeastOnce, retain: false,
                properties: [], expiresAt: nil, publisher: "p")
        }
        state.deliveries = [(3, 7, MQTTQoS.exactlyOnce), (4, 7, .exactlyOnce), (5, 8, .atLeastOnce), (6, 8, .atLeastOnce)].map {
            StoredDelivery(
                clientID: "a", sequence: $0.0, messageID: $0.1, qos: $0.2, retain: false, subscriptionIdentifiers: [], shareGroup: nil,
                state: .queued, packetID: nil)
        }
        let restored = RestoredSessions(state, now: clock.now(), clock: clock)
        #expect(restored.sessions[0].queue.map(\.sequence) == [3, 5, 6])
        #expect(restored.secondRows.map(\.sequence) == [4] && restored.secondRows.map(\.clientID) == ["a"])
    }

    @Test(
        "one read for a batch of claimed sessions, split: each client its rows and the payloads its deliveries name; a client without rows an empty state"
    )
    func splitByClient() {
        func delivery(_ clientID: String, _ sequence: Int64, message: Int64) -> StoredDelivery {
            StoredDelivery(
                clientID: clientID, sequence: sequence, messageID: message, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [],
                shareGroup: nil, state: .queued, packetID: nil)
        }
        func message(_ id: Int64) -> StoredMessage {
            StoredMessage(
                id: id, topic: "t/\(id)", payload: ByteBuffer(), qos: .atLeastOnce, retain: false, properties: [], expiresAt: nil,
                publisher: "p")
        }
        var state = StoredState()
        state.sessions = ["a", "b"].map { StoredSession(clientID: $0, version: .v5, expiryInterval: 60, connected: false) }
        state.subscriptions = [StoredSubscription(clientID: "b", subscription: BrokerPartsTests.subscription("t/#"))]
        state.messages = [message(1), message(2), message(3)]
        state.deliveries = [
            delivery("a", 1, message: 1), delivery("b", 1, message: 1), delivery("b", 2, message: 2), delivery("a", 2, message: 1)
        ]
        state.inboundQoS2 = [("b", 9)]
        let split = state.split(by: ["a", "b", "c"])
        #expect(split.keys.sorted() == ["a", "b", "c"])
        #expect(split["a"]?.sessions.map(\.clientID) == ["a"] && split["a"]?.subscriptions.isEmpty == true)
        #expect(split["a"]?.deliveries.map(\.sequence) == [1, 2] && split["a"]?.messages.map(\.id) == [1])
        #expect(split["b"]?.messages.map(\.id) == [1, 2] && split["b"]?.inboundQoS2.map(\.packetID) == [9])
        #expect(split["b"]?.subscriptions.count == 1)
        #expect(split["c"].map { $0.sessions.isEmpty && $0.deliveries.isEmpty && $0.messages.isEmpty } == true)
    }
}
