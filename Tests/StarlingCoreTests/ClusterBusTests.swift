import MQTTCodec
import NIOCore
import StarlingCore
import StarlingTesting
import Testing

/// The broker core's side of the cluster, driven through the `ClusterBus` port with a
/// recording fake: no sockets, no database.
@Suite("Cluster port")
struct ClusterBusTests {
    static func harness(_ bus: RecordingClusterBus, configure: (inout BrokerConfiguration) -> Void = { _ in }) -> BrokerHarness {
        let h = BrokerHarness(configure: configure)
        h.broker.cluster = bus
        return h
    }

    static func types(_ packets: [MQTTPacket]) -> [MQTTPacketType] { packets.map(\.type) }

    @Test("the first subscription to a filter makes a route, the last unsubscription removes it; SUBACK waits for the peers")
    func routesFollowSubscriptions() {
        let bus = RecordingClusterBus()
        bus.peersAnswerAtOnce = false
        let h = Self.harness(bus)
        let (a, _) = h.connect("a")
        let (b, _) = h.connect("b")
        a.subscribe("t/#")
        #expect(bus.routeChanges.map(\.added) == [["t/#"]])
        #expect(a.take().isEmpty)  // no SUBACK before every peer routes t/# here
        bus.completeAnnouncements()
        h.broker.flush()
        #expect(Self.types(a.take()) == [.suback])
        b.subscribe("t/#")  // a second subscriber: no new route
        #expect(bus.routeChanges.count == 1)
        bus.completeAnnouncements()
        a.send(.unsubscribe(MQTTUnsubscribe(packetID: 2, filters: [try! MQTTTopicFilter("t/#")])))
        #expect(bus.routeChanges.count == 1)  // b still subscribes
        h.drop(b)
        #expect(bus.routeChanges.last?.removed == ["t/#"])
    }

    @Test("a local publish goes to the peers with routes: QoS 0 at once, QoS 1 with its PUBACK; never back from a peer")
    func forwarding() {
        let bus = RecordingClusterBus()
        bus.peerRoutes = { topic in topic.hasPrefix("s/") ? (["n2", "n3"], [:]) : ([], [:]) }
        let h = Self.harness(bus)
        let (p, _) = h.connect("p")
        p.publish("s/1", "zero")
        #expect(Set(bus.forwards.map(\.peer)) == ["n2", "n3"] && bus.forwards.allSatisfy { $0.plain && $0.message.publisher == "p" })
        p.publish("s/1", "one", qos: .atLeastOnce, id: 7)
        #expect(bus.forwards.count == 4)
        // PUBACK 0x00, not 0x10: the peers' subscribers count as matching.
        guard case .puback(let ack) = p.take().last else { Issue.record("no PUBACK"); return }
        #expect(ack.reasonCode == .success)
        p.publish("other/1", "none")
        #expect(bus.forwards.count == 4)
        // A peer's message reaches local subscribers and is not forwarded again.
        let (s, _) = h.connect("s")
        s.subscribe("s/#", qos: .atMostOnce)
        h.broker.receivedFromPeer(
            Message(topic: "s/9", payload: ByteBuffer(string: "from n2"), qos: .atMostOnce, retain: false, publisher: "x"),
            plain: true, groups: [], deliveries: [])
        h.broker.peerReadComplete()
        #expect(s.publishes().map { String(buffer: $0.payload) } == ["from n2"])
        #expect(bus.forwards.count == 4)
    }

    @Test("[MQTT-4.8.2] a shared group gets one copy in the cluster: served here (strategy local), or assigned to one peer")
    func sharedGroupsAcrossNodes() {
        let bus = RecordingClusterBus()
        let group = ShareGroupKey(name: "g", filter: "j/#")
        bus.peerRoutes = { _ in ([], [group: ["n2", "n3"]]) }
        let h = Self.harness(bus) { $0.sharedStrategy = .local }
        let (p, _) = h.connect("p")
        p.publish("j/1", "a")
        #expect(bus.forwards.count == 1 && bus.forwards[0].groups == [group] && !bus.forwards[0].plain)
        let member = h.subscriber("m", to: "$share/g/j/#", qos: .atMostOnce)
        p.publish("j/1", "b")
        #expect(bus.forwards.count == 1)  // served by the local member
        #expect(member.publishes().map { String(buffer: $0.payload) } == ["b"])
        // A peer assigns the group here: one local member gets it; unassigned groups do not.
        h.broker.receivedFromPeer(
            Message(topic: "j/2", payload: ByteBuffer(string: "c"), qos: .atMostOnce, retain: false, publisher: "x"),
            plain: false, groups: [group], deliveries: [])
        h.broker.peerReadComplete()
        h.broker.receivedFromPeer(
            Message(topic: "j/3", payload: ByteBuffer(string: "d"), qos: .atMostOnce, retain: false, publisher: "x"),
            plain: true, groups: [], deliveries: [])
        h.broker.peerReadComplete()
        #expect(member.publishes().map { String(buffer: $0.payload) } == ["c"])
    }

    @Test("G1 for shared groups across nodes: the PUBACK of a QoS 1 message a peer serves a group with waits for that peer's commit")
    func sharedGroupOnAPeerHoldsThePUBACK() {
        let bus = RecordingClusterBus()
        let group = ShareGroupKey(name: "g", filter: "j/#")
        bus.peerRoutes = { _ in ([], [group: ["n2"]]) }
        let h = Self.harness(bus)
        let (p, _) = h.connect("p")
        p.publish("j/1", "a", qos: .atLeastOnce, id: 1)
        #expect(bus.forwards.count == 1 && bus.forwards[0].groups == [group])
        #expect(p.take().isEmpty)  // n2 has not committed its member's row yet
        p.publish("j/2", "b", qos: .atLeastOnce, id: 2)
        #expect(p.take().isEmpty)  // acknowledgements stay in order
        bus.completePeerCommits()
        h.broker.flush()
        #expect(
            p.take().compactMap { packet -> UInt16? in if case .puback(let ack) = packet { return ack.packetID } else { return nil } } == [
                1, 2
            ])
        // QoS 0 waits for nothing; a peer's side acknowledges once what it caused is committed.
        p.publish("j/3", "c")
        #expect(bus.peerCommits.isEmpty)
        var committed = false
        h.broker.receivedFromPeer(
            Message(topic: "j/4", payload: ByteBuffer(string: "d"), qos: .atLeastOnce, retain: false, publisher: "x"),
            plain: false, groups: [group], deliveries: []
        ) { committed = true }
        #expect(committed)
    }

    @Test("retained changes go to the peers; a peer's retained message is served to new subscribers here")
    func retainedAcrossNodes() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let (p, _) = h.connect("p")
        p.publish("r/1", "on", retain: true)
        #expect(bus.retainedChanges.map(\.topic) == ["r/1"])
        h.broker.retainedFromPeer(
            Message(topic: "r/2", payload: ByteBuffer(string: "peer"), qos: .atMostOnce, retain: true, publisher: "x"))
        let (s, _) = h.connect("s")
        s.subscribe("r/#", qos: .atMostOnce)
        #expect(Set(s.publishes().map(\.topic)) == ["r/1", "r/2"])
    }

    @Test("[MQTT-4.6.0-2] the PUBACK of a retained message waits until the peers have it; later PUBACKs stay behind it")
    func retainedAckWaitsForPeers() {
        let bus = RecordingClusterBus()
        bus.peersAnswerAtOnce = false
        let h = Self.harness(bus)
        let (p, _) = h.connect("p")
        p.publish("r/1", "on", qos: .atLeastOnce, id: 1, retain: true)
        p.publish("r/2", "plain", qos: .atLeastOnce, id: 2)
        #expect(p.take().isEmpty)
        bus.completeAnnouncements()
        let ids = p.take().compactMap { if case .puback(let ack) = $0 { ack.packetID } else { nil } }
        #expect(ids == [1, 2])
    }

    @Test("[MQTT-3.1.4-3] a session claimed by another node: its client here gets DISCONNECT 0x8E and the session goes without a will")
    func claimedElsewhere() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let will = MQTTWill(topic: "w", payload: ByteBuffer(string: "gone"))
        let (c, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)], will: will)
        c.subscribe("x/#")
        let watcher = h.subscriber("watcher", to: "w", qos: .atMostOnce)
        var acknowledged = false
        h.broker.sessionClaimedElsewhere("dev", by: "n2", epoch: 2) { acknowledged = true }
        #expect(acknowledged)  // nothing to commit: the claim is acknowledged at once
        guard case .disconnect(let disconnect) = c.take().last else { Issue.record("no DISCONNECT"); return }
        #expect(disconnect.reasonCode == .sessionTakenOver && c.transport.isClosed)
        #expect(h.broker.session("dev") == nil)
        #expect(watcher.publishes().isEmpty)  // the session lives on at n2: no will
        #expect(bus.routeChanges.last?.removed == ["x/#"])
    }

    @Test("a peer's directory naming a later claim of a session held here (the claim never came): it is let go, 0x8E")
    func laterClaimInADirectory() {
        let bus = RecordingClusterBus()
        bus.claimEpoch = 7
        let h = Self.harness(bus)
        let (c, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        c.subscribe("x/#")
        let subscription = Subscription(MQTTSubscription(filter: try! MQTTTopicFilter("x/#"), qos: .atLeastOnce), identifier: nil)
        // An entry of an earlier claim (a stale view) changes nothing.
        h.broker.directoryChanged([SessionDirectoryEntry(clientID: "dev", owner: "n2", subscriptions: [subscription], epoch: 6)])
        #expect(h.broker.session("dev") != nil && !c.transport.isClosed)
        h.broker.directoryChanged([SessionDirectoryEntry(clientID: "dev", owner: "n2", subscriptions: [subscription], epoch: 9)])
        guard case .disconnect(let disconnect) = c.take().last else { Issue.record("no DISCONNECT"); return }
        #expect(disconnect.reasonCode == .sessionTakenOver && c.transport.isClosed)
        #expect(h.broker.session("dev") == nil)
    }

    @Test(
        "G7: while this node's spool is replayed a claim waits for the replay instead of being refused; if the store goes away again it is refused (0x88)"
    )
    func claimWaitsForTheReplay() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        h.broker.storeModeChanged(spooling: false, replaying: true)
        let (waiting, ack) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        #expect(ack == nil && bus.claims.isEmpty && !waiting.transport.isClosed)
        h.broker.storeModeChanged(spooling: false, replaying: false)
        #expect(bus.claims == ["dev"])
        guard case .connack(let connack) = waiting.take().first else { Issue.record("no CONNACK after the replay"); return }
        #expect(connack.reasonCode == .success)

        h.broker.storeModeChanged(spooling: false, replaying: true)
        let (refused, none) = h.connect("other", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        #expect(none == nil)
        h.broker.storeModeChanged(spooling: true, replaying: false)
        guard case .connack(let refusal) = refused.take().first else { Issue.record("no CONNACK"); return }
        #expect(refusal.reasonCode == .serverUnavailable && bus.claims == ["dev"])
    }

    @Test("a CONNECT for a session this node does not hold claims it first; what the store holds is resumed")
    func claimOnConnect() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        // Without a store the claim finds nothing: a new session.
        let (_, ack) = h.connect("new", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        #expect(bus.claims == ["new"] && ack?.sessionPresent == false)
        // A session already held here is not claimed again.
        _ = h.connect("new", cleanStart: false, properties: [.sessionExpiryInterval(60)])
        #expect(bus.claims == ["new"])
    }
}

extension ClusterBusTests {
    @Test(
        "a claim says whether the session has subscriptions by the directory: one that only publishes need not wait for its previous holder's replay"
    )
    func claimSaysWhetherSubscribed() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let subscription = Subscription(MQTTSubscription(filter: try! MQTTTopicFilter("t/#"), qos: .atLeastOnce), identifier: nil)
        h.broker.directoryChanged([
            SessionDirectoryEntry(clientID: "device", owner: "n2", subscriptions: []),
            SessionDirectoryEntry(clientID: "reader", owner: "n2", subscriptions: [subscription])
        ])
        for clientID in ["device", "reader", "unknown"] {
            _ = h.connect(clientID, cleanStart: false, properties: [.sessionExpiryInterval(600)])
        }
        #expect(bus.claims == ["device", "reader", "unknown"] && bus.unsubscribedClaims == ["device"])
    }

    @Test("copies for a session being taken over wait for it, and those the store already holds are not delivered twice")
    func copiesDuringTakeover() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let (publisher, _) = h.connect("pub")
        bus.claimsAnswerAtOnce = false
        let subscription = Subscription(MQTTSubscription(filter: try! MQTTTopicFilter("t/#"), qos: .atLeastOnce), identifier: nil)
        h.broker.directoryChanged([SessionDirectoryEntry(clientID: "dev", owner: "n1", subscriptions: [subscription])])
        // The store holds the session with one queued message, whose copy is also on its way.
        var state = StoredState()
        state.sessions = [StoredSession(clientID: "dev", version: .v5, expiryInterval: 600, connected: false)]
        state.subscriptions = [StoredSubscription(clientID: "dev", subscription: subscription)]
        state.messages = [
            StoredMessage(
                id: 5, topic: "t/stored", payload: ByteBuffer(string: "a"), qos: .atLeastOnce, retain: false,
                properties: [], expiresAt: nil, publisher: "p")
        ]
        state.deliveries = [
            StoredDelivery(
                clientID: "dev", sequence: 77, messageID: 5, qos: .atLeastOnce, retain: false,
                subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil)
        ]
        bus.claimedState = state
        let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        #expect(bus.claims == ["pub", "dev"] && dev.take().isEmpty)
        // While the claim is read: a message published here, and the peer's copy of the stored one.
        publisher.publish("t/local", "b", qos: .atLeastOnce, id: 1)
        h.broker.receivedFromPeer(
            Message(topic: "t/stored", payload: ByteBuffer(string: "a"), qos: .atLeastOnce, retain: false, publisher: "p"),
            plain: false, groups: [],
            deliveries: [
                RemoteDelivery(
                    clientID: "dev", sequence: 77, messageID: 5, qos: .atLeastOnce,
                    retain: false, subscriptionIdentifiers: [])
            ])
        #expect(!bus.forwards.contains { $0.peer == "n1" })  // nothing goes to the old holder
        bus.completeClaims()
        h.broker.flush()
        #expect(dev.publishes().map { String(buffer: $0.payload) }.sorted() == ["a", "b"])
    }
}

extension ClusterBusTests {
    @Test(
        "[MQTT-4.3.3] a peer's copy that comes after the store's rows were read (a claim, or a start-up) is not delivered again: peers hold copies for a link that is down and send them when it comes up",
        arguments: [false, true])
    func lateCopyAfterTheRowsWereRead(atStartUp: Bool) {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let state = Self.storedDev([(77, 5, .queued)])
        if atStartUp { h.broker.restore(state) } else { bus.claimedState = state }
        let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        #expect(dev.publishes().map { String(buffer: $0.payload) } == ["m5"])
        Self.lateCopyOfM5(h)
        #expect(dev.publishes().isEmpty)
    }

    @Test(
        "[MQTT-4.3.3] QoS 2 once across a takeover: deliveries the previous holder ended (its answer to the claim) are not sent again, though their rows are still read"
    )
    func endedDeliveriesAreNotSentAgain() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let state = Self.storedDev([(77, 5, .sent), (78, 6, .queued)])
        bus.claimedState = state
        bus.claimedEnded = [77]  // completed on the old holder, its delete still in that node's spool
        let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        #expect(dev.publishes().map { String(buffer: $0.payload) } == ["m6"])
        // A late copy of the ended one is not delivered either; the holder here answers with it.
        Self.lateCopyOfM5(h)
        #expect(dev.publishes().isEmpty)
        #expect(h.broker.endedDeliveries(of: "dev") == [77])
        h.broker.sessionClaimedElsewhere("dev", by: "n2", epoch: 9) {}
        #expect(h.broker.endedDeliveries(of: "dev") == [77])  // let go: kept a minute for the claimer
    }

    @Test(
        "[MQTT-4.3.3] QoS 2 once: another row of a message the session was already given (a batch in doubt committed and replayed under another sequence) is kept back, its row deleted"
    )
    func secondRowOfAGivenMessage() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        h.broker.restore(Self.storedDev([(77, 5, .queued)]))
        let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
        #expect(dev.publishes().map { String(buffer: $0.payload) } == ["m5"])
        // The same stored message (5) for dev under another row (78), in a peer's copy.
        h.broker.receivedFromPeer(
            Message(topic: "t/5", payload: ByteBuffer(string: "m5"), qos: .exactlyOnce, retain: false, publisher: "p"),
            plain: false, groups: [],
            deliveries: [
                RemoteDelivery(clientID: "dev", sequence: 78, messageID: 5, qos: .exactlyOnce, retain: false, subscriptionIdentifiers: [])
            ])
        h.broker.flush()
        #expect(dev.publishes().isEmpty)
        #expect(h.broker.endedDeliveries(of: "dev").contains(78))
        // And under a third (79) read by a pickup, with a row of another message (80 → 6).
        let rows = Self.storedDev([(79, 5, .queued), (80, 6, .queued)])
        h.broker.beginPickup { _ in }
        h.broker.finishPickup(messages: rows.messages, deliveries: rows.deliveries)
        #expect(dev.publishes().map { String(buffer: $0.payload) } == ["m6"])
        #expect(h.broker.endedDeliveries(of: "dev").contains(79))
    }

    @Test("two claims of one session at once: the later epoch serves the client, the other node refuses it (0x88)")
    func crossingClaims() {
        for (mine, rival, wins) in [(Int64(10), Int64(11), false), (Int64(11), Int64(10), true)] {
            let bus = RecordingClusterBus()
            bus.claimsAnswerAtOnce = false
            bus.claimEpoch = mine
            let h = Self.harness(bus)
            let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)])
            var acknowledged = false
            h.broker.sessionClaimedElsewhere("dev", by: "n2", epoch: rival) { acknowledged = true }
            #expect(acknowledged)
            bus.completeClaims()
            h.broker.flush()
            guard case .connack(let ack) = dev.take().first else { Issue.record("no CONNACK"); continue }
            #expect((ack.reasonCode == .success) == wins && (h.broker.session("dev") != nil) == wins)
            if wins {
                // The rival's claim, arriving after this node's: it lost, and changes nothing.
                h.broker.sessionClaimedElsewhere("dev", by: "n2", epoch: rival) {}
                #expect(!dev.transport.isClosed && h.broker.session("dev") != nil)
            }
        }
    }
}

extension ClusterBusTests {
    @Test(
        "[MQTT-4.8.2] the strategy chooses among the nodes with members, this one included: round_robin takes turns, hash_clientid keeps a publisher on one node"
    )
    func sharedStrategiesAcrossNodes() {
        let group = ShareGroupKey(name: "g", filter: "j/#")
        for strategy in [BrokerConfiguration.SharedStrategy.roundRobin, .hashClientID] {
            let bus = RecordingClusterBus()
            bus.peerRoutes = { _ in ([], [group: ["n2"]]) }
            let h = Self.harness(bus) {
                $0.sharedStrategy = strategy; $0.ingest.nodeID = "n1"
            }
            let member = h.subscriber("m", to: "$share/g/j/#", qos: .atMostOnce)
            let (p, _) = h.connect("p")
            for i in 0..<6 { p.publish("j/1", "\(i)") }
            let here = member.publishes().map { String(buffer: $0.payload) }
            let there = bus.forwards.filter { $0.groups == [group] }.map { String(buffer: $0.message.payload) }
            // One copy per message in the whole cluster.
            #expect((here + there).sorted() == (0..<6).map(String.init))
            switch strategy {
            case .roundRobin: #expect(here.count == 3 && there.count == 3)
            default: #expect(here.isEmpty || there.isEmpty)  // one publisher: one node
            }
        }
    }
}

extension ClusterBusTests {
    @Test("[MQTT-4.8.2-5] a QoS 1 message in flight to a member whose session ends goes to a member on another node when none is left here")
    func sharedRedispatchAcrossNodes() {
        let bus = RecordingClusterBus()
        let group = ShareGroupKey(name: "g", filter: "j/#")
        bus.peerRoutes = { _ in ([], [group: ["n2"]]) }
        let h = Self.harness(bus) { $0.sharedStrategy = .local }
        let member = h.subscriber("m", to: "$share/g/j/#", qos: .atLeastOnce)
        let (p, _) = h.connect("p")
        p.publish("j/1", "reading", qos: .atLeastOnce, id: 1)
        #expect(member.publishes().map { String(buffer: $0.payload) } == ["reading"])  // local: served here
        #expect(!bus.forwards.contains { !$0.groups.isEmpty })
        h.drop(member)  // unacknowledged; its session ends with the connection
        let redispatched = bus.forwards.filter { $0.groups == [group] }
        #expect(redispatched.map(\.peer) == ["n2"] && redispatched.map { String(buffer: $0.message.payload) } == ["reading"])
    }
}

extension ClusterBusTests {
    @Test("a node cut off from the database lets every session go: DISCONNECT 0x89, no will, no write, routes withdrawn")
    func cutOffLetsGo() {
        let bus = RecordingClusterBus()
        let h = Self.harness(bus)
        let will = MQTTWill(topic: "status/dev", payload: ByteBuffer(string: "offline"))
        let (dev, _) = h.connect("dev", cleanStart: false, properties: [.sessionExpiryInterval(600)], will: will)
        dev.subscribe("cmd/#")
        let (old, _) = h.connect("old", version: .v3_1_1, will: will)
        let (watcher, _) = h.connect("watcher")
        watcher.subscribe("status/#", qos: .atMostOnce)
        _ = dev.take() + old.take() + watcher.take()
        h.broker.cutOffFromTheStore()
        #expect(h.broker.clusterCutOff)
        guard case .disconnect(let disconnect) = dev.take().last else { Issue.record("no DISCONNECT"); return }
        #expect(disconnect.reasonCode == .serverBusy && dev.transport.isClosed)
        #expect(old.take().isEmpty && old.transport.isClosed)  // 3.1.1: closed without a word
        #expect(h.broker.session("dev") == nil && h.broker.session("old") == nil)
        #expect(watcher.transport.isClosed && watcher.publishes().isEmpty)  // wills are the survivors'
        #expect(bus.routeChanges.last?.removed.contains("cmd/#") == true)
        // Back on the lease: ready again (the will tokens it hands over: ClusterPortTests).
        _ = h.broker.reachesTheStoreAgain()
        #expect(!h.broker.clusterCutOff)
    }
}

@Suite("Membership lease")
struct LeaseKeeperTests {
    @Test("a lease is held from the start of its last successful renewal for its duration, renewed every third of it (at most 1 s)")
    func lease() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var keeper = LeaseKeeper(lease: .seconds(5))
        #expect(keeper.renewInterval == .seconds(1))
        #expect(!keeper.isHeld(at: start))
        keeper.renewed(startedAt: start)
        #expect(keeper.isHeld(at: start + .milliseconds(4999)) && !keeper.isHeld(at: start + .seconds(5)))
        keeper.failed("unreachable")
        #expect(keeper.isHeld(at: start + .seconds(1)) && keeper.lastFailure == "unreachable")  // still within the lease
        keeper.lost("taken over")
        #expect(!keeper.isHeld(at: start + .seconds(1)))
        #expect(LeaseKeeper(lease: .milliseconds(1500)).renewInterval == .milliseconds(500))
    }

    @Test(
        "the partition verdict: a peer's renewal after this node's lapse proves it cut off only once a renewal of its own, started later, failed"
    )
    func partitionVerdict() {
        let t0 = NIODeadline.uptimeNanoseconds(100_000_000_000)
        let lapsed = t0
        let peer = (renewed: t0 + .milliseconds(500), heard: t0 + .milliseconds(600))
        let now = t0 + .milliseconds(700)
        func verdict(_ failed: NIODeadline?) -> [String] {
            LeaseKeeper.peersReachingTheStore(
                lapsed: lapsed, lastFailedAttempt: failed, peers: ["n2": peer], now: now, freshness: .seconds(3))
        }
        // The database came back and n2 got through first; this node's last try was before that
        // (its pool still backing off, say): not cut off — it renews on its next try.
        #expect(verdict(t0 - .milliseconds(200)).isEmpty)
        #expect(verdict(nil).isEmpty)
        // This node tried after n2 renewed, and failed: the database answers n2, not this node.
        #expect(verdict(t0 + .milliseconds(550)) == ["n2"])
        // A renewal before the lapse proves nothing; stale word neither.
        let before = (renewed: t0 - .milliseconds(10), heard: now)
        #expect(
            LeaseKeeper.peersReachingTheStore(
                lapsed: lapsed, lastFailedAttempt: now, peers: ["n3": before], now: now, freshness: .seconds(3)
            ).isEmpty)
        #expect(
            LeaseKeeper.peersReachingTheStore(
                lapsed: lapsed, lastFailedAttempt: now, peers: ["n2": peer], now: now + .seconds(4),
                freshness: .seconds(3)
            ).isEmpty)
        var keeper = LeaseKeeper(lease: .seconds(5))
        keeper.failed("refused", startedAt: t0 + .seconds(2))
        keeper.failed("refused", startedAt: t0 + .seconds(1))  // a slower, earlier try ending late
        #expect(keeper.lastFailedAttempt == t0 + .seconds(2))
    }

    @Test("a node record is dead once its lease expired, whatever it last said")
    func status() {
        var record = NodeRecord(
            nodeID: "n1", incarnation: 1, mqttAddress: "a:1", clusterAddress: "a:2", httpAddress: nil,
            state: .draining, clients: 3, leaseAgeMilliseconds: 100, leaseRemainingMilliseconds: 900)
        #expect(record.isLive && record.status == "draining")
        record.leaseRemainingMilliseconds = 0
        #expect(!record.isLive && record.status == "dead")
        record.state = .left
        #expect(record.status == "left")
    }
}

extension ClusterBusTests {
    /// "dev"'s stored session, subscribed to t/# at QoS 2, with a delivery of the QoS 2 message
    /// "m<id>" on t/<id> for each `(sequence, message id, state)` (packet id 3 once sent).
    static func storedDev(_ deliveries: [(Int64, Int64, StoredDeliveryState)]) -> StoredState {
        let subscription = Subscription(MQTTSubscription(filter: try! MQTTTopicFilter("t/#"), qos: .exactlyOnce), identifier: nil)
        var state = StoredState()
        state.sessions = [StoredSession(clientID: "dev", version: .v5, expiryInterval: 600, connected: false)]
        state.subscriptions = [StoredSubscription(clientID: "dev", subscription: subscription)]
        state.messages = deliveries.map { _, id, _ in
            StoredMessage(
                id: id, topic: "t/\(id)", payload: ByteBuffer(string: "m\(id)"), qos: .exactlyOnce,
                retain: false, properties: [], expiresAt: nil, publisher: "p")
        }
        state.deliveries = deliveries.map { sequence, message, stage in
            StoredDelivery(
                clientID: "dev", sequence: sequence, messageID: message, qos: .exactlyOnce, retain: false,
                subscriptionIdentifiers: [], shareGroup: nil, state: stage, packetID: stage == .sent ? 3 : nil)
        }
        return state
    }

    /// A peer's copy of m5 (row 77) for "dev", arriving late; flushed.
    static func lateCopyOfM5(_ h: BrokerHarness) {
        h.broker.receivedFromPeer(
            Message(topic: "t/5", payload: ByteBuffer(string: "m5"), qos: .exactlyOnce, retain: false, publisher: "p"),
            plain: false, groups: [],
            deliveries: [
                RemoteDelivery(
                    clientID: "dev", sequence: 77, messageID: 5,
                    qos: .exactlyOnce, retain: false, subscriptionIdentifiers: [])
            ])
        h.broker.flush()
    }
}
