import MQTTCodec
import NIOCore
@testable import StarlingCore
import Testing

/// The protocol checks of CONNECT and PUBLISH as pure decisions: one line per refusal, in the
/// order a client meets them (end to end, the same refusals are seen by real clients in
/// Tests/interop).
@Suite("Decisions: the checks of CONNECT and PUBLISH")
struct DecisionTests {
    static func publish(
        _ topic: String = "t", qos: MQTTQoS = .atLeastOnce, id: UInt16? = 1, retain: Bool = false, payload: String = "x",
        properties: MQTTProperties = []
    ) -> MQTTPublish {
        MQTTPublish(
            topic: topic, payload: ByteBuffer(string: payload), qos: qos, retain: retain, packetID: qos == .atMostOnce ? nil : id,
            properties: properties)
    }

    static func verdict(
        _ publish: MQTTPublish, version: MQTTProtocolVersion = .v5, aliases: [UInt16: String] = [:], inbound: Set<UInt16> = [],
        unacknowledged: Int = 0, allowed: Bool = true, _ change: (inout BrokerConfiguration) -> Void = { _ in }
    ) -> PublishCheck.Verdict {
        var configuration = BrokerConfiguration()
        change(&configuration)
        let context = PublishCheck.Context(version: version, aliases: aliases, inboundQoS2: inbound, unacknowledgedQoS1: unacknowledged)
        return PublishCheck.verdict(publish, context, configuration: configuration) { _ in allowed }
    }

    @Test("PUBLISH: accepted, refused with an acknowledgement, or the connection closed — each check in its order")
    func publishChecks() {
        let invalidUTF8 = MQTTPublish(
            topic: "t", payload: ByteBuffer(bytes: [0xFF]), qos: .atLeastOnce, packetID: 1,
            properties: [.payloadFormatIndicator(1)])
        #expect(Self.verdict(Self.publish()) == .accept(topic: "t", learnsAlias: nil))
        #expect(Self.verdict(Self.publish(properties: [.topicAlias(3)])) == .accept(topic: "t", learnsAlias: 3))  // [MQTT-3.3.2-7]
        #expect(
            Self.verdict(Self.publish("", properties: [.topicAlias(3)]), aliases: [3: "a/b"]) == .accept(topic: "a/b", learnsAlias: nil))
        #expect(
            Self.verdict(Self.publish("", properties: [.topicAlias(3)]))
                == .disconnect(.protocolError, "Topic Alias 3 has no topic yet", spec: "MQTT-3.3.2-8"))
        #expect(
            Self.verdict(Self.publish(properties: [.topicAlias(65)]))
                == .disconnect(.topicAliasInvalid, "Topic Alias 65 exceeds the maximum of 64", spec: "MQTT-3.3.2-9"))
        #expect(
            Self.verdict(Self.publish(qos: .exactlyOnce)) { $0.maximumQoS = .atLeastOnce }
                == .disconnect(.qosNotSupported, "QoS 2 exceeds the maximum QoS", spec: "MQTT-3.2.2-11"))
        #expect(
            Self.verdict(Self.publish(retain: true)) { $0.retainAvailable = false }
                == .disconnect(.retainNotSupported, "retained messages are not supported", spec: "MQTT-3.2.2-14"))
        #expect(Self.verdict(Self.publish("a/b/c")) { $0.maxTopicLevels = 2 } == .refuse(.topicNameInvalid, "topic more than 2 levels"))
        #expect(
            Self.verdict(Self.publish("a/b/c"), version: .v3_1_1) { $0.maxTopicLevels = 2 }
                == .disconnect(.topicNameInvalid, "topic more than 2 levels", spec: nil))
        #expect(
            Self.verdict(Self.publish("abc", qos: .atMostOnce)) { $0.maxTopicLength = 2 }
                == .disconnect(.topicNameInvalid, "topic longer than 2 bytes", spec: nil))
        #expect(Self.verdict(Self.publish(qos: .exactlyOnce, id: 9), inbound: [9]) == .duplicateQoS2)  // [MQTT-4.3.3-10]
        #expect(
            Self.verdict(Self.publish(), inbound: [1], unacknowledged: 255)
                == .disconnect(.receiveMaximumExceeded, "more than 256 QoS 1 and 2 messages are unacknowledged", spec: "MQTT-3.3.4-9"))
        // 3.x: TCP holds it back
        #expect(Self.verdict(Self.publish(), version: .v3_1_1, unacknowledged: 300) == .accept(topic: "t", learnsAlias: nil))
        #expect(Self.verdict(invalidUTF8) == .refuse(.payloadFormatInvalid, "the payload is not valid UTF-8"))
        #expect(Self.verdict(invalidUTF8) { $0.validateUTF8Payloads = false } == .accept(topic: "t", learnsAlias: nil))
        #expect(Self.verdict(Self.publish(), allowed: false) == .denied(topic: "t"))
    }

    static func verdict(
        _ connect: MQTTConnect, accepting: Bool = true, clients: Int = 0, willAllowed: Bool = true,
        _ change: (inout BrokerConfiguration) -> Void = { _ in }
    ) -> ConnectCheck.Verdict {
        var configuration = BrokerConfiguration()
        change(&configuration)
        return ConnectCheck(configuration: configuration).verdict(
            connect, accepting: accepting, connectedClients: clients, assignID: { "auto-1" },
            mayPublishWill: { _, _ in willAllowed })
    }

    static func terms(_ clientID: String, assigned: String? = nil, keepAlive: UInt16 = 60, server: UInt16? = nil) -> ConnectCheck.Verdict {
        .accept(ConnectCheck.Terms(clientID: clientID, assignedID: assigned, keepAlive: keepAlive, serverKeepAlive: server))
    }

    @Test("CONNECT: the terms it is accepted on, or the reason it is refused — each check in its order")
    func connectChecks() {
        let will = { (qos: MQTTQoS, retain: Bool, topic: String) in
            MQTTWill(topic: topic, payload: ByteBuffer(string: "w"), qos: qos, retain: retain)
        }
        #expect(Self.verdict(MQTTConnect(clientID: "dev")) == Self.terms("dev"))
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev"), accepting: false)
                == .refuse(.serverUnavailable, "the server is shutting down", clientID: nil))
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev"), clients: 5) { $0.maxConnections = 5 }
                == .refuse(.quotaExceeded, "connection limit of 5 reached", clientID: nil))
        #expect(Self.verdict(MQTTConnect(clientID: "")) == Self.terms("auto-1", assigned: "auto-1"))  // [MQTT-3.1.3-6]
        #expect(
            Self.verdict(MQTTConnect(version: .v3_1_1, clientID: "", cleanStart: false))
                == .refuse(.clientIdentifierNotValid, "an empty client identifier is not allowed", clientID: nil))  // [MQTT-3.1.3-8]
        #expect(
            Self.verdict(MQTTConnect(version: .v3_1_1, clientID: "")) { $0.allowEmptyClientID = false }
                == .refuse(.clientIdentifierNotValid, "an empty client identifier is not allowed", clientID: nil))
        #expect(
            Self.verdict(MQTTConnect(clientID: "abcd")) { $0.maxClientIDLength = 3 }
                == .refuse(.clientIdentifierNotValid, "client identifier longer than 3 bytes", clientID: nil))
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev", keepAlive: 0)) { $0.maxKeepAlive = 30 }
                == Self.terms("dev", keepAlive: 30, server: 30))  // [MQTT-3.2.2-21]
        #expect(
            Self.verdict(MQTTConnect(version: .v3_1_1, clientID: "dev", keepAlive: 90)) { $0.maxKeepAlive = 30 }
                == .refuse(.clientIdentifierNotValid, "keep alive 90 exceeds the maximum of 30 seconds", clientID: "dev"))
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev", will: will(.exactlyOnce, false, "w"))) { $0.maximumQoS = .atLeastOnce }
                == .refuse(.qosNotSupported, "Will QoS 2 exceeds the maximum QoS", clientID: "dev"))  // [MQTT-3.2.2-12]
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev", will: will(.atMostOnce, true, "w"))) { $0.retainAvailable = false }
                == .refuse(.retainNotSupported, "retained wills are not supported", clientID: "dev"))  // [MQTT-3.2.2-13]
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev", will: will(.atMostOnce, false, "a/b/c"))) { $0.maxTopicLevels = 2 }
                == .refuse(.topicNameInvalid, "will topic: more than 2 levels", clientID: "dev"))
        #expect(
            Self.verdict(MQTTConnect(clientID: "dev", will: will(.atMostOnce, false, "w")), willAllowed: false)
                == .refuse(.notAuthorized, "not authorized to publish the will topic", clientID: "dev"))
    }
}
