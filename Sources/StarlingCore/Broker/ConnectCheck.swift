import MQTTCodec

/// The checks of a CONNECT before authentication, as a decision (docs/architecture.md, "The
/// broker core"): no state is changed here, so each refusal is a one-line test. The order of
/// the checks is the order a client sees them in.
struct ConnectCheck {
    /// The terms a CONNECT is accepted on.
    struct Terms: Equatable {
        var clientID: String
        /// The identifier the server assigned to an empty one [MQTT-3.2.2-16].
        var assignedID: String?
        var keepAlive: UInt16
        /// Sent back when the server lowered the keep alive (5.0) [MQTT-3.2.2-21].
        var serverKeepAlive: UInt16?
    }

    enum Verdict: Equatable {
        /// On to authentication.
        case accept(Terms)
        /// CONNACK with `reason`, then close; `clientID`, once known, names the client in the log.
        case refuse(MQTTReasonCode, String, clientID: String?)
    }

    let configuration: BrokerConfiguration

    /// `assignID` makes an identifier for an empty one; `mayPublishWill(topic, clientID)` asks
    /// the authorizer.
    func verdict(
        _ connect: MQTTConnect, accepting: Bool, connectedClients: Int, assignID: () -> String,
        mayPublishWill: (String, String) -> Bool
    ) -> Verdict {
        guard accepting else { return .refuse(.serverUnavailable, "the server is shutting down", clientID: nil) }
        if connectedClients >= configuration.maxConnections {
            return .refuse(.quotaExceeded, "connection limit of \(configuration.maxConnections) reached", clientID: nil)
        }
        // Client identifier [MQTT-3.1.3-6][MQTT-3.1.3-7]
        var clientID = connect.clientID
        var assignedID: String?
        if clientID.isEmpty {
            guard connect.version == .v5 || (configuration.allowEmptyClientID && connect.cleanStart) else {
                return .refuse(.clientIdentifierNotValid, "an empty client identifier is not allowed", clientID: nil)
            }
            clientID = assignID()
            assignedID = clientID
        }
        guard clientID.utf8.count <= configuration.maxClientIDLength else {
            return .refuse(
                .clientIdentifierNotValid, "client identifier longer than \(configuration.maxClientIDLength) bytes", clientID: nil)
        }
        // Keep alive [MQTT-3.1.2-21][MQTT-3.2.2-21]
        var terms = Terms(clientID: clientID, assignedID: assignedID, keepAlive: connect.keepAlive, serverKeepAlive: nil)
        let maxKeepAlive = configuration.maxKeepAlive
        if maxKeepAlive > 0 && (connect.keepAlive > maxKeepAlive || connect.keepAlive == 0) {
            guard connect.version == .v5 else {
                // 3.x has no Server Keep Alive to tell the client; refuse as Mosquitto does.
                return .refuse(
                    .clientIdentifierNotValid, "keep alive \(connect.keepAlive) exceeds the maximum of \(maxKeepAlive) seconds",
                    clientID: clientID)
            }
            terms.keepAlive = maxKeepAlive
            terms.serverKeepAlive = maxKeepAlive
        }
        // The will [MQTT-3.1.2-7]
        if let will = connect.will, let (reason, message) = willProblem(will, clientID: clientID, mayPublishWill: mayPublishWill) {
            return .refuse(reason, message, clientID: clientID)
        }
        return .accept(terms)
    }

    private func willProblem(_ will: MQTTWill, clientID: String, mayPublishWill: (String, String) -> Bool) -> (MQTTReasonCode, String)? {
        if will.qos > configuration.maximumQoS {
            return (.qosNotSupported, "Will QoS \(will.qos.rawValue) exceeds the maximum QoS")  // [MQTT-3.2.2-12]
        }
        if will.retain && !configuration.retainAvailable {
            return (.retainNotSupported, "retained wills are not supported")  // [MQTT-3.2.2-13]
        }
        if let problem = configuration.topicProblem(will.topic) {
            return (.topicNameInvalid, "will topic: \(problem)")
        }
        if configuration.validateUTF8Payloads && will.properties.payloadFormatIndicator == 1 && !will.payload.isValidMQTTUTF8 {
            return (.payloadFormatInvalid, "the will payload is not UTF-8")
        }
        if !mayPublishWill(will.topic, clientID) {
            return (.notAuthorized, "not authorized to publish the will topic")
        }
        return nil
    }
}
