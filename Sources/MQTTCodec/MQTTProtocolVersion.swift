/// The protocol level carried in CONNECT.
///
/// MQTT 3.1 uses the protocol name `MQIsdp` and level 3; MQTT 3.1.1 uses `MQTT` and level 4;
/// MQTT 5.0 uses `MQTT` and level 5.
public enum MQTTProtocolVersion: UInt8, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case v3_1 = 3
    case v3_1_1 = 4
    case v5 = 5

    /// The protocol name a CONNECT of this version carries [MQTT-3.1.2-1].
    public var protocolName: String {
        self == .v3_1 ? "MQIsdp" : "MQTT"
    }

    /// True for MQTT 5.0, the only version with properties and reason codes everywhere.
    @inlinable public var hasProperties: Bool { self == .v5 }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .v3_1: "3.1"
        case .v3_1_1: "3.1.1"
        case .v5: "5.0"
        }
    }
}
