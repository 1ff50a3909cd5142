public import NIOCore

/// One MQTT 5.0 property [MQTT-2.2.2.2]. The identifier, wire type, the packets that may carry
/// it and whether it may repeat are in `MQTTProperty.Identifier.spec`.
public enum MQTTProperty: Sendable, Hashable {
    case payloadFormatIndicator(UInt8)  // 0x01
    case messageExpiryInterval(UInt32)  // 0x02
    case contentType(String)  // 0x03
    case responseTopic(String)  // 0x08
    case correlationData(ByteBuffer)  // 0x09
    case subscriptionIdentifier(Int)  // 0x0B
    case sessionExpiryInterval(UInt32)  // 0x11
    case assignedClientIdentifier(String)  // 0x12
    case serverKeepAlive(UInt16)  // 0x13
    case authenticationMethod(String)  // 0x15
    case authenticationData(ByteBuffer)  // 0x16
    case requestProblemInformation(UInt8)  // 0x17
    case willDelayInterval(UInt32)  // 0x18
    case requestResponseInformation(UInt8)  // 0x19
    case responseInformation(String)  // 0x1A
    case serverReference(String)  // 0x1C
    case reasonString(String)  // 0x1F
    case receiveMaximum(UInt16)  // 0x21
    case topicAliasMaximum(UInt16)  // 0x22
    case topicAlias(UInt16)  // 0x23
    case maximumQoS(UInt8)  // 0x24
    case retainAvailable(UInt8)  // 0x25
    case userProperty(String, String)  // 0x26
    case maximumPacketSize(UInt32)  // 0x27
    case wildcardSubscriptionAvailable(UInt8)  // 0x28
    case subscriptionIdentifierAvailable(UInt8)  // 0x29
    case sharedSubscriptionAvailable(UInt8)  // 0x2A

    public var identifier: Identifier {
        switch self {
        case .payloadFormatIndicator: .payloadFormatIndicator
        case .messageExpiryInterval: .messageExpiryInterval
        case .contentType: .contentType
        case .responseTopic: .responseTopic
        case .correlationData: .correlationData
        case .subscriptionIdentifier: .subscriptionIdentifier
        case .sessionExpiryInterval: .sessionExpiryInterval
        case .assignedClientIdentifier: .assignedClientIdentifier
        case .serverKeepAlive: .serverKeepAlive
        case .authenticationMethod: .authenticationMethod
        case .authenticationData: .authenticationData
        case .requestProblemInformation: .requestProblemInformation
        case .willDelayInterval: .willDelayInterval
        case .requestResponseInformation: .requestResponseInformation
        case .responseInformation: .responseInformation
        case .serverReference: .serverReference
        case .reasonString: .reasonString
        case .receiveMaximum: .receiveMaximum
        case .topicAliasMaximum: .topicAliasMaximum
        case .topicAlias: .topicAlias
        case .maximumQoS: .maximumQoS
        case .retainAvailable: .retainAvailable
        case .userProperty: .userProperty
        case .maximumPacketSize: .maximumPacketSize
        case .wildcardSubscriptionAvailable: .wildcardSubscriptionAvailable
        case .subscriptionIdentifierAvailable: .subscriptionIdentifierAvailable
        case .sharedSubscriptionAvailable: .sharedSubscriptionAvailable
        }
    }
}

extension MQTTProperty {
    /// Property identifiers [MQTT-2.2.2.2].
    public enum Identifier: UInt8, Sendable, Hashable, CaseIterable {
        case payloadFormatIndicator = 0x01
        case messageExpiryInterval = 0x02
        case contentType = 0x03
        case responseTopic = 0x08
        case correlationData = 0x09
        case subscriptionIdentifier = 0x0B
        case sessionExpiryInterval = 0x11
        case assignedClientIdentifier = 0x12
        case serverKeepAlive = 0x13
        case authenticationMethod = 0x15
        case authenticationData = 0x16
        case requestProblemInformation = 0x17
        case willDelayInterval = 0x18
        case requestResponseInformation = 0x19
        case responseInformation = 0x1A
        case serverReference = 0x1C
        case reasonString = 0x1F
        case receiveMaximum = 0x21
        case topicAliasMaximum = 0x22
        case topicAlias = 0x23
        case maximumQoS = 0x24
        case retainAvailable = 0x25
        case userProperty = 0x26
        case maximumPacketSize = 0x27
        case wildcardSubscriptionAvailable = 0x28
        case subscriptionIdentifierAvailable = 0x29
        case sharedSubscriptionAvailable = 0x2A
    }

    /// The data representation of a property's value [MQTT-1.5].
    public enum WireType: Sendable, Hashable {
        case byte, twoByteInteger, fourByteInteger, variableByteInteger, string, binary, stringPair
    }

    /// Where a property may appear: a packet type, or the Will Properties of CONNECT.
    public struct Context: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let connect = Self(rawValue: 1 << 0)
        public static let connack = Self(rawValue: 1 << 1)
        public static let publish = Self(rawValue: 1 << 2)
        public static let will = Self(rawValue: 1 << 3)
        public static let puback = Self(rawValue: 1 << 4)
        public static let pubrec = Self(rawValue: 1 << 5)
        public static let pubrel = Self(rawValue: 1 << 6)
        public static let pubcomp = Self(rawValue: 1 << 7)
        public static let subscribe = Self(rawValue: 1 << 8)
        public static let suback = Self(rawValue: 1 << 9)
        public static let unsubscribe = Self(rawValue: 1 << 10)
        public static let unsuback = Self(rawValue: 1 << 11)
        public static let disconnect = Self(rawValue: 1 << 12)
        public static let auth = Self(rawValue: 1 << 13)

        public static let all: Self = [
            .connect, .connack, .publish, .will, .puback, .pubrec, .pubrel,
            .pubcomp, .subscribe, .suback, .unsubscribe, .unsuback,
            .disconnect, .auth
        ]

        /// The context of a packet type's own property list.
        public init(_ type: MQTTPacketType) {
            switch type {
            case .connect: self = .connect
            case .connack: self = .connack
            case .publish: self = .publish
            case .puback: self = .puback
            case .pubrec: self = .pubrec
            case .pubrel: self = .pubrel
            case .pubcomp: self = .pubcomp
            case .subscribe: self = .subscribe
            case .suback: self = .suback
            case .unsubscribe: self = .unsubscribe
            case .unsuback: self = .unsuback
            case .disconnect: self = .disconnect
            case .auth: self = .auth
            case .pingreq, .pingresp: self = []
            }
        }

        public var description: String {
            let names: [(Self, String)] = [
                (.connect, "CONNECT"), (.connack, "CONNACK"), (.publish, "PUBLISH"), (.will, "Will Properties"),
                (.puback, "PUBACK"), (.pubrec, "PUBREC"), (.pubrel, "PUBREL"), (.pubcomp, "PUBCOMP"),
                (.subscribe, "SUBSCRIBE"), (.suback, "SUBACK"), (.unsubscribe, "UNSUBSCRIBE"),
                (.unsuback, "UNSUBACK"), (.disconnect, "DISCONNECT"), (.auth, "AUTH")
            ]
            return names.filter { contains($0.0) }.map(\.1).joined(separator: ", ")
        }
    }

    /// One row of the property table [MQTT-2.2.2.2, Table 2-4].
    public struct Spec: Sendable {
        public var name: String
        public var wireType: WireType
        public var allowedIn: Context
        /// User Property may repeat everywhere; Subscription Identifier may repeat in PUBLISH
        /// (one per matching subscription) but not in SUBSCRIBE [MQTT-3.8.2.1.2].
        public var repeatableIn: Context
    }
}

extension MQTTProperty.Identifier {
    /// The property table: one place that says what each property is and where it may go.
    public var spec: MQTTProperty.Spec {
        typealias S = MQTTProperty.Spec
        let pubrelEtc: MQTTProperty.Context = [.puback, .pubrec, .pubrel, .pubcomp]
        switch self {
        case .payloadFormatIndicator:
            return S(name: "Payload Format Indicator", wireType: .byte, allowedIn: [.publish, .will], repeatableIn: [])
        case .messageExpiryInterval:
            return S(name: "Message Expiry Interval", wireType: .fourByteInteger, allowedIn: [.publish, .will], repeatableIn: [])
        case .contentType:
            return S(name: "Content Type", wireType: .string, allowedIn: [.publish, .will], repeatableIn: [])
        case .responseTopic:
            return S(name: "Response Topic", wireType: .string, allowedIn: [.publish, .will], repeatableIn: [])
        case .correlationData:
            return S(name: "Correlation Data", wireType: .binary, allowedIn: [.publish, .will], repeatableIn: [])
        case .subscriptionIdentifier:
            return S(
                name: "Subscription Identifier", wireType: .variableByteInteger, allowedIn: [.publish, .subscribe], repeatableIn: [.publish]
            )
        case .sessionExpiryInterval:
            return S(
                name: "Session Expiry Interval", wireType: .fourByteInteger, allowedIn: [.connect, .connack, .disconnect], repeatableIn: [])
        case .assignedClientIdentifier:
            return S(name: "Assigned Client Identifier", wireType: .string, allowedIn: [.connack], repeatableIn: [])
        case .serverKeepAlive:
            return S(name: "Server Keep Alive", wireType: .twoByteInteger, allowedIn: [.connack], repeatableIn: [])
        case .authenticationMethod:
            return S(name: "Authentication Method", wireType: .string, allowedIn: [.connect, .connack, .auth], repeatableIn: [])
        case .authenticationData:
            return S(name: "Authentication Data", wireType: .binary, allowedIn: [.connect, .connack, .auth], repeatableIn: [])
        case .requestProblemInformation:
            return S(name: "Request Problem Information", wireType: .byte, allowedIn: [.connect], repeatableIn: [])
        case .willDelayInterval:
            return S(name: "Will Delay Interval", wireType: .fourByteInteger, allowedIn: [.will], repeatableIn: [])
        case .requestResponseInformation:
            return S(name: "Request Response Information", wireType: .byte, allowedIn: [.connect], repeatableIn: [])
        case .responseInformation:
            return S(name: "Response Information", wireType: .string, allowedIn: [.connack], repeatableIn: [])
        case .serverReference:
            return S(name: "Server Reference", wireType: .string, allowedIn: [.connack, .disconnect], repeatableIn: [])
        case .reasonString:
            return S(
                name: "Reason String", wireType: .string,
                allowedIn: pubrelEtc.union([.connack, .suback, .unsuback, .disconnect, .auth]), repeatableIn: [])
        case .receiveMaximum:
            return S(name: "Receive Maximum", wireType: .twoByteInteger, allowedIn: [.connect, .connack], repeatableIn: [])
        case .topicAliasMaximum:
            return S(name: "Topic Alias Maximum", wireType: .twoByteInteger, allowedIn: [.connect, .connack], repeatableIn: [])
        case .topicAlias:
            return S(name: "Topic Alias", wireType: .twoByteInteger, allowedIn: [.publish], repeatableIn: [])
        case .maximumQoS:
            return S(name: "Maximum QoS", wireType: .byte, allowedIn: [.connack], repeatableIn: [])
        case .retainAvailable:
            return S(name: "Retain Available", wireType: .byte, allowedIn: [.connack], repeatableIn: [])
        case .userProperty:
            return S(name: "User Property", wireType: .stringPair, allowedIn: .all, repeatableIn: .all)
        case .maximumPacketSize:
            return S(name: "Maximum Packet Size", wireType: .fourByteInteger, allowedIn: [.connect, .connack], repeatableIn: [])
        case .wildcardSubscriptionAvailable:
            return S(name: "Wildcard Subscription Available", wireType: .byte, allowedIn: [.connack], repeatableIn: [])
        case .subscriptionIdentifierAvailable:
            return S(name: "Subscription Identifier Available", wireType: .byte, allowedIn: [.connack], repeatableIn: [])
        case .sharedSubscriptionAvailable:
            return S(name: "Shared Subscription Available", wireType: .byte, allowedIn: [.connack], repeatableIn: [])
        }
    }
}
