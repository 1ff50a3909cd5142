/// An MQTT 5.0 reason code [MQTT-2.4], one byte, whose meaning depends on the packet carrying it.
///
/// Values below 0x80 report success; 0x80 and above report failure [MQTT-2.4]. The constants are
/// named and documented as in the specification's table; `0x00` has three names.
public struct MQTTReasonCode: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    /// True for the codes below 0x80.
    @inlinable public var isSuccess: Bool { rawValue < 0x80 }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// 0x00 — CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH: the operation succeeded.
    public static let success = Self(0x00)
    /// 0x00 — DISCONNECT: close the connection normally; do not send the Will Message.
    public static let normalDisconnection = Self(0x00)
    /// 0x00 — SUBACK: the subscription is accepted and the maximum QoS sent will be 0.
    public static let grantedQoS0 = Self(0x00)
    /// 0x01 — SUBACK: the subscription is accepted and the maximum QoS sent will be 1.
    public static let grantedQoS1 = Self(0x01)
    /// 0x02 — SUBACK: the subscription is accepted and any received QoS will be sent.
    public static let grantedQoS2 = Self(0x02)
    /// 0x04 — DISCONNECT: the Client wishes to disconnect but requires that the Server also
    /// publishes its Will Message.
    public static let disconnectWithWillMessage = Self(0x04)
    /// 0x10 — PUBACK, PUBREC: the message is accepted but there are no subscribers. Sent only
    /// by the Server.
    public static let noMatchingSubscribers = Self(0x10)
    /// 0x11 — UNSUBACK: no matching Topic Filter is being used by the Client.
    public static let noSubscriptionExisted = Self(0x11)
    /// 0x18 — AUTH: continue the authentication with another step.
    public static let continueAuthentication = Self(0x18)
    /// 0x19 — AUTH: initiate a re-authentication.
    public static let reAuthenticate = Self(0x19)
    /// 0x80 — the Server (or Client) does not wish to reveal the reason for the failure, or
    /// none of the other reason codes apply.
    public static let unspecifiedError = Self(0x80)
    /// 0x80 — SUBACK 3.1.1 failure return code; the same byte as `unspecifiedError`.
    public static let failure = Self(0x80)
    /// 0x81 — data within the packet could not be correctly parsed.
    public static let malformedPacket = Self(0x81)
    /// 0x82 — data in the packet does not conform to this specification.
    public static let protocolError = Self(0x82)
    /// 0x83 — the packet is valid but is not accepted by this implementation.
    public static let implementationSpecificError = Self(0x83)
    /// 0x84 — CONNACK: the Server does not support the requested version of the protocol.
    public static let unsupportedProtocolVersion = Self(0x84)
    /// 0x85 — CONNACK: the Client Identifier is a valid string but is not allowed by the Server.
    public static let clientIdentifierNotValid = Self(0x85)
    /// 0x86 — CONNACK: the Server does not accept the User Name or Password.
    public static let badUserNameOrPassword = Self(0x86)
    /// 0x87 — the request is not authorized.
    public static let notAuthorized = Self(0x87)
    /// 0x88 — CONNACK: the MQTT Server is not available.
    public static let serverUnavailable = Self(0x88)
    /// 0x89 — the Server is busy; try again later.
    public static let serverBusy = Self(0x89)
    /// 0x8A — CONNACK: this Client has been banned by administrative action.
    public static let banned = Self(0x8A)
    /// 0x8B — DISCONNECT: the Server is shutting down.
    public static let serverShuttingDown = Self(0x8B)
    /// 0x8C — CONNACK, DISCONNECT: the authentication method is not supported or does not
    /// match the method currently in use.
    public static let badAuthenticationMethod = Self(0x8C)
    /// 0x8D — DISCONNECT: the connection is closed because no packet has been received for
    /// 1.5 times the Keep Alive time.
    public static let keepAliveTimeout = Self(0x8D)
    /// 0x8E — DISCONNECT: another connection using the same Client Identifier has connected.
    public static let sessionTakenOver = Self(0x8E)
    /// 0x8F — SUBACK, UNSUBACK, DISCONNECT: the Topic Filter is correctly formed but is not
    /// accepted by this Server.
    public static let topicFilterInvalid = Self(0x8F)
    /// 0x90 — CONNACK, PUBACK, PUBREC, DISCONNECT: the Topic Name is correctly formed but is
    /// not accepted by this Client or Server.
    public static let topicNameInvalid = Self(0x90)
    /// 0x91 — PUBACK, PUBREC, SUBACK, UNSUBACK: the Packet Identifier is already in use.
    public static let packetIdentifierInUse = Self(0x91)
    /// 0x92 — PUBREL, PUBCOMP: the Packet Identifier is not known.
    public static let packetIdentifierNotFound = Self(0x92)
    /// 0x93 — DISCONNECT: more than Receive Maximum publications were received unacknowledged.
    public static let receiveMaximumExceeded = Self(0x93)
    /// 0x94 — DISCONNECT: a Topic Alias was received that is greater than the maximum.
    public static let topicAliasInvalid = Self(0x94)
    /// 0x95 — CONNACK, DISCONNECT: the packet exceeded the maximum permissible size.
    public static let packetTooLarge = Self(0x95)
    /// 0x96 — DISCONNECT: the received data rate is too high.
    public static let messageRateTooHigh = Self(0x96)
    /// 0x97 — an implementation or administrative imposed limit has been exceeded.
    public static let quotaExceeded = Self(0x97)
    /// 0x98 — DISCONNECT: the connection is closed due to an administrative action.
    public static let administrativeAction = Self(0x98)
    /// 0x99 — the payload format does not match the Payload Format Indicator.
    public static let payloadFormatInvalid = Self(0x99)
    /// 0x9A — CONNACK, DISCONNECT: the Server does not support retained messages.
    public static let retainNotSupported = Self(0x9A)
    /// 0x9B — CONNACK, DISCONNECT: the QoS is greater than the Maximum QoS in the CONNACK.
    public static let qosNotSupported = Self(0x9B)
    /// 0x9C — CONNACK, DISCONNECT: the Client should temporarily use another server.
    public static let useAnotherServer = Self(0x9C)
    /// 0x9D — CONNACK, DISCONNECT: the Client should permanently use another server.
    public static let serverMoved = Self(0x9D)
    /// 0x9E — SUBACK, DISCONNECT: the Server does not support Shared Subscriptions.
    public static let sharedSubscriptionsNotSupported = Self(0x9E)
    /// 0x9F — CONNACK, DISCONNECT: the connection rate limit has been exceeded.
    public static let connectionRateExceeded = Self(0x9F)
    /// 0xA0 — DISCONNECT: the maximum connection time authorized for this connection has
    /// been exceeded.
    public static let maximumConnectTime = Self(0xA0)
    /// 0xA1 — SUBACK, DISCONNECT: the Server does not support Subscription Identifiers.
    public static let subscriptionIdentifiersNotSupported = Self(0xA1)
    /// 0xA2 — SUBACK, DISCONNECT: the Server does not support Wildcard Subscriptions.
    public static let wildcardSubscriptionsNotSupported = Self(0xA2)

    public var description: String {
        let name: String =
            switch rawValue {
            case 0x00: "Success"
            case 0x01: "Granted QoS 1"
            case 0x02: "Granted QoS 2"
            case 0x04: "Disconnect with Will Message"
            case 0x10: "No matching subscribers"
            case 0x11: "No subscription existed"
            case 0x18: "Continue authentication"
            case 0x19: "Re-authenticate"
            case 0x80: "Unspecified error"
            case 0x81: "Malformed Packet"
            case 0x82: "Protocol Error"
            case 0x83: "Implementation specific error"
            case 0x84: "Unsupported Protocol Version"
            case 0x85: "Client Identifier not valid"
            case 0x86: "Bad User Name or Password"
            case 0x87: "Not authorized"
            case 0x88: "Server unavailable"
            case 0x89: "Server busy"
            case 0x8A: "Banned"
            case 0x8B: "Server shutting down"
            case 0x8C: "Bad authentication method"
            case 0x8D: "Keep Alive timeout"
            case 0x8E: "Session taken over"
            case 0x8F: "Topic Filter invalid"
            case 0x90: "Topic Name invalid"
            case 0x91: "Packet Identifier in use"
            case 0x92: "Packet Identifier not found"
            case 0x93: "Receive Maximum exceeded"
            case 0x94: "Topic Alias invalid"
            case 0x95: "Packet too large"
            case 0x96: "Message rate too high"
            case 0x97: "Quota exceeded"
            case 0x98: "Administrative action"
            case 0x99: "Payload format invalid"
            case 0x9A: "Retain not supported"
            case 0x9B: "QoS not supported"
            case 0x9C: "Use another server"
            case 0x9D: "Server moved"
            case 0x9E: "Shared Subscriptions not supported"
            case 0x9F: "Connection rate exceeded"
            case 0xA0: "Maximum connect time"
            case 0xA1: "Subscription Identifiers not supported"
            case 0xA2: "Wildcard Subscriptions not supported"
            default: "Unknown"
            }
        return "0x\(String(rawValue, radix: 16, uppercase: true).leftPadded(2)) \(name)"
    }
}

extension MQTTReasonCode {
    /// The reason codes each packet may carry, from the per-packet tables of MQTT 5.0
    /// (sections 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1).
    /// A value outside its packet's table is a Malformed Packet [MQTT-1.5.x data representation:
    /// "a value not of the specified data type"].
    public static func allowed(in type: MQTTPacketType) -> Set<UInt8> {
        switch type {
        case .connack:
            [
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F
            ]
        case .puback, .pubrec:
            [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
        case .pubrel, .pubcomp:
            [0x00, 0x92]
        case .suback:
            [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
        case .unsuback:
            [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
        case .disconnect:
            [
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2
            ]
        case .auth:
            [0x00, 0x18, 0x19]
        default:
            []
        }
    }
}

extension String {
    func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
