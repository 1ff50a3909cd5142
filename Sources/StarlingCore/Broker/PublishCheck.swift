import MQTTCodec

/// The protocol checks of a PUBLISH from a client, as a decision (docs/architecture.md, "The
/// broker core"): no state is changed here, so each refusal is a one-line test. The order of
/// the checks is the order a client sees them in.
enum PublishCheck {
    /// What becomes of the packet.
    enum Verdict: Equatable {
        /// Routed under `topic` (a Topic Alias resolved); `learnsAlias`: the alias this packet
        /// sets for `topic` [MQTT-3.3.2-7].
        case accept(topic: String, learnsAlias: UInt16?)
        /// The connection ends with `reason` (5.0: DISCONNECT with it).
        case disconnect(MQTTReasonCode, String, spec: String?)
        /// Acknowledged with `reason` (5.0, QoS 1 and 2), not routed.
        case refuse(MQTTReasonCode, String)
        /// QoS 2 with a packet id still held: PUBREC again, nothing delivered [MQTT-4.3.3-10].
        case duplicateQoS2
        /// Not authorized for `topic`: 5.0 says so in the acknowledgement; 3.x cannot, and is
        /// acknowledged as if delivered.
        case denied(topic: String)
    }

    /// The connection's state the checks read.
    struct Context {
        var version: MQTTProtocolVersion
        var aliases: [UInt16: String]
        var inboundQoS2: Set<UInt16>
        var unacknowledgedQoS1: Int
    }

    /// The configuration is borrowed, not copied: this runs for every PUBLISH.
    static func verdict(
        _ publish: MQTTPublish, _ context: Context, configuration: borrowing BrokerConfiguration,
        isAllowed: (String) -> Bool
    ) -> Verdict {
        let v5 = context.version == .v5
        // Topic Alias [MQTT-3.3.2-7..9]
        var topic = publish.topic
        var learnsAlias: UInt16?
        if v5, let alias = publish.properties.topicAlias {
            guard alias <= configuration.topicAliasMaximum else {
                return .disconnect(
                    .topicAliasInvalid, "Topic Alias \(alias) exceeds the maximum of \(configuration.topicAliasMaximum)",
                    spec: "MQTT-3.3.2-9")
            }
            if topic.isEmpty {
                guard let known = context.aliases[alias] else {
                    return .disconnect(.protocolError, "Topic Alias \(alias) has no topic yet", spec: "MQTT-3.3.2-8")
                }
                topic = known
            } else {
                learnsAlias = alias
            }
        }
        if publish.qos > configuration.maximumQoS {
            return .disconnect(.qosNotSupported, "QoS \(publish.qos.rawValue) exceeds the maximum QoS", spec: "MQTT-3.2.2-11")
        }
        if publish.retain && !configuration.retainAvailable {
            return .disconnect(.retainNotSupported, "retained messages are not supported", spec: "MQTT-3.2.2-14")
        }
        if let problem = configuration.topicProblem(topic) {
            // 5.0 answers a QoS 1/2 message with 0x90; QoS 0 and 3.x can only disconnect.
            let acknowledged = v5 && publish.qos != .atMostOnce && publish.packetID != nil
            return acknowledged
                ? .refuse(.topicNameInvalid, "topic \(problem)") : .disconnect(.topicNameInvalid, "topic \(problem)", spec: nil)
        }
        if publish.qos == .exactlyOnce, let id = publish.packetID, context.inboundQoS2.contains(id) {
            return .duplicateQoS2
        }
        // Receive Maximum [MQTT-3.3.4-9]: unacknowledged QoS 1 and 2 PUBLISH packets. Only 5.0
        // clients were told the limit; 3.x clients are held back by TCP flow control instead.
        if v5 && publish.qos != .atMostOnce && context.inboundQoS2.count + context.unacknowledgedQoS1 >= Int(configuration.receiveMaximum) {
            return .disconnect(
                .receiveMaximumExceeded, "more than \(configuration.receiveMaximum) QoS 1 and 2 messages are unacknowledged",
                spec: "MQTT-3.3.4-9")
        }
        // Payload Format Indicator 1: the payload must be UTF-8 [MQTT-3.3.2.3.2].
        if v5 && configuration.validateUTF8Payloads && publish.properties.payloadFormatIndicator == 1 && !publish.payload.isValidMQTTUTF8 {
            let acknowledged = publish.qos != .atMostOnce && publish.packetID != nil
            return acknowledged
                ? .refuse(.payloadFormatInvalid, "the payload is not valid UTF-8")
                : .disconnect(.payloadFormatInvalid, "the payload is not valid UTF-8", spec: nil)
        }
        guard isAllowed(topic) else { return .denied(topic: topic) }
        return .accept(topic: topic, learnsAlias: learnsAlias)
    }
}
