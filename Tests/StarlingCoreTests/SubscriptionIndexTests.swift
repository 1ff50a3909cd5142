import MQTTCodec
import StarlingCore
import Testing

@Suite("Subscription index")
struct SubscriptionIndexTests {
    typealias Index = SubscriptionIndex<String, MQTTQoS>

    private func filter(_ raw: String) -> MQTTTopicFilter { try! MQTTTopicFilter(raw) }

    /// An index holding `entries` (filter, subscriber, QoS), inserted in order.
    private func indexed(_ entries: (String, String, MQTTQoS)...) -> Index {
        let index = Index()
        for (raw, subscriber, qos) in entries { index.insert(filter(raw), subscriber: subscriber, value: qos) }
        return index
    }

    private func subscribers(_ index: Index, _ topic: String) -> Set<String> {
        Set(index.matches(topic).subscriptions.map(\.subscriber))
    }

    @Test("the index agrees with MQTTTopic.matches on every filter and topic of a table")
    func agreesWithMatcher() {
        let filters = ["#", "+", "a/#", "a/+", "a/b", "a/+/c", "+/b/#", "/+", "$SYS/#", "+/+", "a//c", "a/b/", "/#"]
        let topics = ["a", "a/b", "a/b/c", "a//c", "/x", "$SYS/up", "b/b/b", "a/b/", "/", "x/y/z/w", "$SYS"]
        let index = Index()
        for (i, f) in filters.enumerated() { index.insert(filter(f), subscriber: "s\(i)", value: .atMostOnce) }
        for topic in topics {
            let expected = Set(filters.enumerated().filter { MQTTTopic.matches(filter: $0.element, topic: topic) }.map { "s\($0.offset)" })
            #expect(subscribers(index, topic) == expected, "topic \(topic)")
        }
    }

    @Test("[MQTT-3.8.4-3] re-subscribing replaces the subscription")
    func replace() {
        let index = Index()
        #expect(index.insert(filter("a/+"), subscriber: "c1", value: .atMostOnce))
        #expect(!index.insert(filter("a/+"), subscriber: "c1", value: .exactlyOnce))
        #expect(index.count == 1)
        #expect(index.matches("a/b").subscriptions.first?.value == .exactlyOnce)
    }

    @Test("removal prunes, leaves other subscribers, and reports what it removed")
    func removal() {
        let index = indexed(("a/b/c", "c1", .atLeastOnce), ("a/b/c", "c2", .atMostOnce), ("a/#", "c1", .atMostOnce))
        #expect(index.remove(filter("a/b/c"), subscriber: "c1") == .atLeastOnce)
        #expect(index.remove(filter("a/b/c"), subscriber: "c1") == nil)
        #expect(index.remove(filter("x/y"), subscriber: "c1") == nil)
        #expect(subscribers(index, "a/b/c") == ["c1", "c2"])
        #expect(index.remove(filter("a/b/c"), subscriber: "c2") == .atMostOnce)
        #expect(index.remove(filter("a/#"), subscriber: "c1") == .atMostOnce)
        #expect(index.count == 0)
        #expect(index.matches("a/b/c").isEmpty)
    }

    @Test("[MQTT-4.8.2] shared subscriptions are grouped by share name and filter")
    func sharedGroups() {
        let index = indexed(
            ("$share/g1/sensors/+", "a", .atLeastOnce),
            ("$share/g1/sensors/+", "b", .atLeastOnce),
            ("$share/g2/sensors/+", "c", .atMostOnce),
            ("$share/g1/sensors/#", "d", .atMostOnce),
            ("sensors/+", "e", .atMostOnce)
        )
        let matches = index.matches("sensors/t1")
        #expect(matches.subscriptions.map(\.subscriber) == ["e"])
        let groups = Dictionary(uniqueKeysWithValues: matches.groups.map { ($0.group, Set($0.members.map(\.subscriber))) })
        #expect(
            groups == [
                .init(name: "g1", filter: "sensors/+"): ["a", "b"],
                .init(name: "g2", filter: "sensors/+"): ["c"],
                .init(name: "g1", filter: "sensors/#"): ["d"]
            ])
        #expect(index.remove(filter("$share/g1/sensors/+"), subscriber: "a") != nil)
        #expect(index.remove(filter("sensors/+"), subscriber: "a") == nil)
        #expect(index.count == 4)
    }

    @Test("[MQTT-4.7.2-1] $ topics are not matched by leading wildcards in the index")
    func dollarTopics() {
        let index = indexed(("#", "all", .atMostOnce), ("+/broker/#", "plus", .atMostOnce), ("$SYS/#", "sys", .atMostOnce))
        #expect(subscribers(index, "$SYS/broker/uptime") == ["sys"])
        #expect(subscribers(index, "x/broker/uptime") == ["all", "plus"])
    }

    @Test("[MQTT-4.7.3-4] matching compares bytes: no Unicode normalization")
    func noNormalization() {
        let index = Index()
        index.insert(filter("caf\u{E9}/+"), subscriber: "precomposed", value: .atMostOnce)
        #expect(subscribers(index, "caf\u{E9}/x") == ["precomposed"])
        #expect(subscribers(index, "cafe\u{301}/x").isEmpty)  // canonically equal, different bytes
        #expect(!MQTTTopic.matches(filter: "caf\u{E9}/+", topic: "cafe\u{301}/x"))
    }

    @Test("readers and a writer run concurrently without losing subscriptions")
    func concurrentReadsAndWrites() async {
        let index = Index()
        for i in 0..<1_000 { index.insert(filter("fixed/\(i)"), subscriber: "f\(i)", value: .atMostOnce) }
        await withTaskGroup(of: Int.self) { group in
            group.addTask {
                for i in 0..<2_000 { index.insert(filter("churn/\(i % 50)/+"), subscriber: "w\(i)", value: .atMostOnce) }
                for i in 0..<2_000 { index.remove(filter("churn/\(i % 50)/+"), subscriber: "w\(i)") }
                return 0
            }
            for reader in 0..<4 {
                group.addTask {
                    var seen = 0
                    for i in 0..<2_000 {
                        // A fixed subscription is always visible, whatever the writer does.
                        seen += index.matches("fixed/\((i + reader) % 1_000)").subscriptions.count
                    }
                    return seen
                }
            }
            var total = 0
            for await count in group { total += count }
            #expect(total == 4 * 2_000)
        }
        #expect(index.count == 1_000)
    }
}
