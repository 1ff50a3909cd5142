import MQTTCodec
import Testing

@Suite("Topic names, filters and matching")
struct TopicTests {
    // (filter, topic, matches) — the examples of MQTT 5.0 section 4.7 and more.
    static let matching: [(String, String, Bool)] = [
        // [MQTT-4.7.1-1] "#" matches the parent and any number of child levels.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/#", "sport/tennis2", false),
        // [MQTT-4.7.1-2] "+" matches exactly one level.
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+", "sport", true),
        ("+", "/finance", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/+/+", "a/b/c", true),
        ("+/+/+", "a/b", false),
        ("a/+/c", "a//c", true),
        // Literal levels are case sensitive and exact.
        ("ACCOUNTS", "Accounts", false),
        ("a/b", "a/b", true),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b/", true),
        ("/", "/", true),
        // [MQTT-4.7.2-1] "$" topics are not matched by a leading wildcard.
        ("#", "$SYS/broker/uptime", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/broker/uptime", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+/uptime", "$SYS/broker/uptime", true),
        ("a/#", "a/$x", true),
        ("+/$x", "a/$x", true),
        // Multi-byte UTF-8 levels.
        ("капибара/+", "капибара/🦫", true),
        ("капибара/+", "капибар/🦫", false)
    ]

    @Test("[MQTT-4.7.1-1][MQTT-4.7.1-2][MQTT-4.7.2-1] wildcard matching table", arguments: matching)
    func matchingTable(_ row: (String, String, Bool)) throws {
        let (filter, topic, expected) = row
        #expect(MQTTTopic.matches(filter: filter, topic: topic) == expected, "\(filter) vs \(topic)")
        #expect(try MQTTTopicFilter(filter).matches(topic) == expected)
    }

    static let validFilters = ["#", "+", "a/#", "a/+/b", "+/+", "/", "//", "a//b", "/#", "+/#", "$SYS/#", "sport/tennis/+", "a b/c"]
    static let invalidFilters = ["", "a#", "a/#/b", "#/a", "sport+", "+a", "a/b+", "a/+b/c", "##", "++", "a/##"]

    @Test("[MQTT-4.7.1-1][MQTT-4.7.1-2] valid filters are accepted", arguments: validFilters)
    func validFilter(_ filter: String) throws {
        try MQTTTopic.validateFilter(filter)
        #expect(try MQTTTopicFilter(filter).filter == filter)
    }

    @Test("[MQTT-4.7.1-1][MQTT-4.7.1-2][MQTT-4.7.3-1] invalid filters are refused", arguments: invalidFilters)
    func invalidFilter(_ filter: String) {
        let error = #expect(throws: MQTTCodecError.self) { try MQTTTopic.validateFilter(filter) }
        #expect(error?.reasonCode == .protocolError)
    }

    @Test(
        "[MQTT-3.3.2-2][MQTT-4.7.3-1] topic names: no wildcards, not empty",
        arguments: [("a/b", true), ("/", true), ("$SYS/x", true), ("a b", true), ("", false), ("a/+", false), ("#", false), ("a+b", false)])
    func topicNames(_ row: (String, Bool)) {
        let (name, valid) = row
        #expect(((try? MQTTTopic.validateName(name)) != nil) == valid)
    }

    @Test("[MQTT-4.8.2-1][MQTT-4.8.2-2] shared subscription parsing")
    func sharedSubscriptions() throws {
        let shared = try MQTTTopicFilter("$share/consumer1/sport/tennis/+")
        #expect(shared.shareName == "consumer1")
        #expect(shared.filter == "sport/tennis/+")
        #expect(shared.isShared)
        #expect(shared.matches("sport/tennis/player1"))
        // "$share/consumer1//finance" is valid: the filter is "/finance".
        let leadingSlash = try MQTTTopicFilter("$share/consumer1//finance")
        #expect(leadingSlash.filter == "/finance")
        let plain = try MQTTTopicFilter("$shared/x")
        #expect(plain.shareName == nil)
        for bad in ["$share/", "$share//a", "$share/a", "$share/a/", "$share/a+/b", "$share/#/b", "$share/g/a#"] {
            #expect(throws: MQTTCodecError.self, "\(bad)") { try MQTTTopicFilter(bad) }
        }
    }

    @Test("topic levels keep empty levels")
    func levels() {
        #expect(MQTTTopic.levels("/a//b/") == ["", "a", "", "b", ""])
    }
}
