/// A decode or validation failure, carrying the answer a receiver owes the sender.
///
/// `reasonCode` is what an MQTT 5.0 receiver sends (in CONNACK while connecting, DISCONNECT
/// after). `connectReturnCode` is set where MQTT 3.1 / 3.1.1 answer a CONNECT with a CONNACK
/// return code (0x01 unacceptable protocol version, 0x02 identifier rejected); for every other
/// 3.x error the receiver just closes the network connection [MQTT-4.8.0-1 in 3.1.1].
public struct MQTTCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reasonCode: MQTTReasonCode
    public var connectReturnCode: MQTTConnectReturnCode?
    /// The conformance statement violated, e.g. `MQTT-3.3.1-4`, when there is one.
    public var specID: String?
    public var message: String
    /// The protocol version of the CONNECT being decoded, once its level has been read, so a
    /// server knows whether to answer with a 5.0 or a 3.1.1 CONNACK.
    public var protocolVersion: MQTTProtocolVersion?

    public init(
        _ reasonCode: MQTTReasonCode,
        _ message: String,
        spec specID: String? = nil,
        connectReturnCode: MQTTConnectReturnCode? = nil
    ) {
        (self.reasonCode, self.message, self.specID, self.connectReturnCode) = (reasonCode, message, specID, connectReturnCode)
    }

    /// 0x81: the bytes cannot be parsed as the packet they claim to be.
    public static func malformed(_ message: String, spec: String? = nil) -> Self {
        Self(.malformedPacket, message, spec: spec)
    }

    /// 0x82: the bytes parse, but break a rule of the protocol.
    public static func protocolError(_ message: String, spec: String? = nil) -> Self {
        Self(.protocolError, message, spec: spec)
    }

    /// 0x95: the packet is larger than the receiver's maximum.
    public static func packetTooLarge(size: Int, maximum: Int) -> Self {
        Self(
            .packetTooLarge, "packet of \(size) bytes exceeds the maximum of \(maximum) bytes",
            spec: "MQTT-3.2.2-15")
    }

    public var description: String {
        var text = "\(reasonCode): \(message)"
        if let specID { text += " [\(specID)]" }
        return text
    }
}

/// The CONNACK return codes of MQTT 3.1 and 3.1.1 (section 3.2.2.3 of 3.1.1).
public enum MQTTConnectReturnCode: UInt8, Sendable, Hashable, CaseIterable {
    case accepted = 0x00
    case unacceptableProtocolVersion = 0x01
    case identifierRejected = 0x02
    case serverUnavailable = 0x03
    case badUserNameOrPassword = 0x04
    case notAuthorized = 0x05

    /// The MQTT 5.0 reason code that means the same.
    public var reasonCode: MQTTReasonCode {
        switch self {
        case .accepted: .success
        case .unacceptableProtocolVersion: .unsupportedProtocolVersion
        case .identifierRejected: .clientIdentifierNotValid
        case .serverUnavailable: .serverUnavailable
        case .badUserNameOrPassword: .badUserNameOrPassword
        case .notAuthorized: .notAuthorized
        }
    }

    /// The closest 3.1.1 return code for an MQTT 5.0 CONNACK reason code.
    public init(_ reasonCode: MQTTReasonCode) {
        switch reasonCode {
        case .success: self = .accepted
        case .unsupportedProtocolVersion: self = .unacceptableProtocolVersion
        case .clientIdentifierNotValid: self = .identifierRejected
        case .badUserNameOrPassword: self = .badUserNameOrPassword
        case .notAuthorized, .banned, .badAuthenticationMethod: self = .notAuthorized
        default: self = .serverUnavailable
        }
    }
}
