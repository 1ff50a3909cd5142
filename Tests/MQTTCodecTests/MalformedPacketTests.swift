import MQTTCodec
import NIOCore
import Testing

/// One packet that breaks one rule, and the answer a receiver owes.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    var spec: String
    var what: String
    var version: MQTTProtocolVersion = .v5
    var role: MQTTRole = .server
    var bytes: [UInt8]
    var reason: MQTTReasonCode
    var connectReturnCode: MQTTConnectReturnCode? = nil

    var testDescription: String { "[\(spec)] \(what) (\(version))" }
}

// Small builders so each case shows the bytes that matter.
private func str(_ s: String) -> [UInt8] { [UInt8(s.utf8.count >> 8), UInt8(s.utf8.count & 0xFF)] + Array(s.utf8) }
private func raw(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes }
private func packet(_ first: UInt8, _ body: [UInt8]...) -> [UInt8] {
    let flat = body.flatMap { $0 }
    var out: [UInt8] = [first]
    var length = flat.count
    repeat {
        var byte = UInt8(length & 0x7F)
        length >>= 7
        if length > 0 { byte |= 0x80 }
        out.append(byte)
    } while length > 0
    return out + flat
}
private func props(_ bytes: UInt8...) -> [UInt8] { [UInt8(bytes.count)] + bytes }
/// A CONNECT of `version` with the given flags, keep alive 60 and client id "c".
private func connect(_ version: MQTTProtocolVersion = .v5, flags: UInt8 = 0x02, properties: [UInt8] = [0], payload: [UInt8] = str("c"))
    -> [UInt8]
{
    packet(
        0x10, str(version.protocolName), [version.rawValue, flags, 0x00, 0x3C],
        version == .v5 ? properties : [], payload)
}

let malformedCases: [MalformedCase] = [
    // Fixed header and framing
    MalformedCase(
        spec: "MQTT-2.1.3-1", what: "CONNECT with fixed header flags 0001", bytes: [0x11] + connect().dropFirst(), reason: .malformedPacket),
    MalformedCase(spec: "MQTT-2.1.2", what: "reserved packet type 0", bytes: [0x00, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-2.1.2", what: "packet type 15 before 5.0", version: .v3_1_1, bytes: [0xF0, 0x00], reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.5-1", what: "remaining length of five bytes", bytes: [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.5-1", what: "remaining length not minimally encoded", bytes: [0xC0, 0x80, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.1.0-1", what: "server receives CONNACK", bytes: [0x20, 0x03, 0x00, 0x00, 0x00], reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.0-1", what: "client receives SUBSCRIBE", role: .client, bytes: packet(0x82, [0, 1], [0], str("a"), [0]),
        reason: .protocolError),

    // CONNECT
    MalformedCase(
        spec: "MQTT-3.1.2-1", what: "protocol name MQTX", bytes: packet(0x10, str("MQTX"), [5, 2, 0, 60, 0], str("c")),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2-2", what: "protocol level 6", bytes: packet(0x10, str("MQTT"), [6, 2, 0, 60, 0], str("c")),
        reason: .unsupportedProtocolVersion, connectReturnCode: .unacceptableProtocolVersion),
    MalformedCase(
        spec: "MQTT-3.1.2-2", what: "protocol name MQTT with level 3", bytes: packet(0x10, str("MQTT"), [3, 2, 0, 60], str("c")),
        reason: .unsupportedProtocolVersion, connectReturnCode: .unacceptableProtocolVersion),
    MalformedCase(
        spec: "MQTT-3.1.2-2", what: "protocol name MQIsdp with level 4", bytes: packet(0x10, str("MQIsdp"), [4, 2, 0, 60], str("c")),
        reason: .unsupportedProtocolVersion, connectReturnCode: .unacceptableProtocolVersion),
    MalformedCase(spec: "MQTT-3.1.2-3", what: "reserved connect flag set", bytes: connect(flags: 0x03), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2-3", what: "reserved connect flag set", version: .v3_1_1, bytes: connect(.v3_1_1, flags: 0x03),
        reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.1.2-11", what: "Will QoS 1 without Will Flag", bytes: connect(flags: 0x0A), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2-12", what: "Will QoS 3", bytes: connect(flags: 0x1E, payload: str("c") + [0] + str("t") + str("p")),
        reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.1.2-13", what: "Will Retain without Will Flag", bytes: connect(flags: 0x22), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2-9", what: "Will Flag without will topic", bytes: connect(flags: 0x06, payload: str("c") + [0]),
        reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.1.2-16", what: "User Name Flag without user name", bytes: connect(flags: 0x82), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2-18", what: "Password Flag without password", bytes: connect(flags: 0xC2, payload: str("c") + str("u")),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2-22", what: "password without user name", version: .v3_1_1,
        bytes: connect(.v3_1_1, flags: 0x42, payload: str("c") + raw([1, 2])), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.3-8", what: "empty client id with Clean Session 0", version: .v3_1_1,
        bytes: connect(.v3_1_1, flags: 0x00, payload: str("")), reason: .clientIdentifierNotValid, connectReturnCode: .identifierRejected),
    MalformedCase(
        spec: "MQTT-3.1.3-8", what: "empty client id (3.1 requires one)", version: .v3_1,
        bytes: connect(.v3_1, flags: 0x02, payload: str("")), reason: .clientIdentifierNotValid, connectReturnCode: .identifierRejected),
    MalformedCase(
        spec: "MQTT-1.5.4-1", what: "client id of ill-formed UTF-8", bytes: connect(payload: raw([0xC3, 0x28])), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.4-1", what: "client id holding an encoded surrogate U+D800", bytes: connect(payload: raw([0xED, 0xA0, 0x80])),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.4-1", what: "client id with an overlong encoding", version: .v3_1_1,
        bytes: connect(.v3_1_1, payload: raw([0xC0, 0xAF])), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.4-2", what: "client id holding U+0000", bytes: connect(payload: raw([0x61, 0x00, 0x62])), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.3-11", what: "will topic with a wildcard",
        bytes: connect(flags: 0x06, payload: str("c") + [0] + str("a/#") + str("p")), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.3-1", what: "trailing bytes after the CONNECT payload", bytes: connect(payload: str("c") + [0xFF]),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.4", what: "client id length overruns the packet", bytes: connect(payload: [0x00, 0x09, 0x61]),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "Topic Alias in CONNECT properties", bytes: connect(properties: props(0x23, 0x00, 0x01)),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "unknown property 0x7F", bytes: connect(properties: props(0x7F, 0x00)), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.1.2.11.2", what: "Session Expiry Interval twice",
        bytes: connect(properties: props(0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2)), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2.11.3", what: "Receive Maximum 0", bytes: connect(properties: props(0x21, 0x00, 0x00)), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2.11.4", what: "Maximum Packet Size 0", bytes: connect(properties: props(0x27, 0, 0, 0, 0)), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2.11.7", what: "Request Problem Information 2", bytes: connect(properties: props(0x17, 0x02)),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2.11.6", what: "Request Response Information 2", bytes: connect(properties: props(0x19, 0x02)),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.1.2.11.10", what: "Authentication Data without Authentication Method",
        bytes: connect(properties: props(0x16, 0x00, 0x01, 0xAA)), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.2", what: "property length overruns the packet", bytes: connect(properties: [0x09, 0x11, 0, 0]),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "Will Delay Interval in CONNECT properties (it belongs to the will)",
        bytes: connect(properties: props(0x18, 0, 0, 0, 1)), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.3.2-14", what: "will Response Topic with a wildcard",
        bytes: connect(flags: 0x06, payload: str("c") + [6, 0x08] + str("r/+") + str("t") + str("p")), reason: .protocolError),

    // PUBLISH
    MalformedCase(spec: "MQTT-3.3.1-4", what: "PUBLISH with QoS 3", bytes: packet(0x36, str("a"), [0, 1], [0]), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.3.1-4", what: "PUBLISH with QoS 3", version: .v3_1_1, bytes: packet(0x36, str("a"), [0, 1]), reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.3.1-2", what: "PUBLISH with DUP at QoS 0", bytes: packet(0x38, str("a"), [0]), reason: .protocolError),
    MalformedCase(spec: "MQTT-3.3.2-2", what: "PUBLISH topic with '+'", bytes: packet(0x30, str("a/+"), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.3.2-2", what: "PUBLISH topic with '#'", version: .v3_1_1, bytes: packet(0x30, str("a/#")), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.7.3-1", what: "PUBLISH with an empty topic", version: .v3_1_1, bytes: packet(0x30, str(""), [1]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.3.2.3.4", what: "empty topic without a Topic Alias", bytes: packet(0x30, str(""), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.1-3", what: "PUBLISH QoS 1 with packet identifier 0", bytes: packet(0x32, str("a"), [0, 0], [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.3.2-8", what: "Topic Alias 0", bytes: packet(0x30, str("a"), props(0x23, 0, 0)), reason: .topicAliasInvalid),
    MalformedCase(
        spec: "MQTT-3.3.4-6", what: "client PUBLISH carrying a Subscription Identifier", bytes: packet(0x30, str("a"), props(0x0B, 0x01)),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "Session Expiry Interval in PUBLISH", bytes: packet(0x30, str("a"), props(0x11, 0, 0, 0, 1)),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.3.2.3.3", what: "Message Expiry Interval twice",
        bytes: packet(0x30, str("a"), props(0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1)), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.3.2.3.2", what: "Payload Format Indicator 2", bytes: packet(0x30, str("a"), props(0x01, 0x02)), reason: .protocolError
    ),
    MalformedCase(
        spec: "MQTT-1.5.7-1", what: "User Property value of ill-formed UTF-8",
        bytes: packet(0x30, str("a"), props(0x26, 0, 1, 0x6B, 0, 1, 0xFF)), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-1.5.4-1", what: "topic of ill-formed UTF-8", version: .v3_1_1, bytes: packet(0x30, raw([0x61, 0xFE])),
        reason: .malformedPacket),

    // PUBACK, PUBREC, PUBREL, PUBCOMP
    MalformedCase(spec: "MQTT-3.6.1-1", what: "PUBREL with flags 0000", bytes: [0x60, 0x02, 0x00, 0x01], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-2.1.3-1", what: "PUBACK with flags 0010", bytes: [0x42, 0x02, 0x00, 0x01], reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.4.2", what: "3.1.1 PUBACK with remaining length 3", version: .v3_1_1, bytes: [0x40, 0x03, 0x00, 0x01, 0x00],
        reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.4.2", what: "PUBACK with remaining length 1", bytes: [0x40, 0x01, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.4.2-1", what: "PUBACK reason code 0x05", bytes: [0x40, 0x03, 0x00, 0x01, 0x05], reason: .protocolError),
    MalformedCase(spec: "MQTT-3.6.2-1", what: "PUBREL reason code 0x10", bytes: [0x62, 0x03, 0x00, 0x01, 0x10], reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.1-3", what: "PUBCOMP with packet identifier 0", version: .v3_1_1, bytes: [0x70, 0x02, 0x00, 0x00],
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "Topic Alias in PUBACK", bytes: [0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
        reason: .malformedPacket),

    // SUBSCRIBE
    MalformedCase(
        spec: "MQTT-3.8.1-1", what: "SUBSCRIBE with flags 0000", bytes: packet(0x80, [0, 1], [0], str("a"), [0]), reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.8.3-2", what: "SUBSCRIBE without topic filters", bytes: packet(0x82, [0, 1], [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.3-3", what: "SUBSCRIBE without topic filters", version: .v3_1_1, bytes: packet(0x82, [0, 1]), reason: .protocolError
    ),
    MalformedCase(
        spec: "MQTT-2.2.1-3", what: "SUBSCRIBE with packet identifier 0", bytes: packet(0x82, [0, 0], [0], str("a"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.3-5", what: "reserved subscription option bits", bytes: packet(0x82, [0, 1], [0], str("a"), [0x40]),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3-8.3-4", what: "reserved requested-QoS bits", version: .v3_1_1, bytes: packet(0x82, [0, 1], str("a"), [0x04]),
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3-8.3-4", what: "requested QoS 3", version: .v3_1_1, bytes: packet(0x82, [0, 1], str("a"), [0x03]),
        reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.8.3.1", what: "maximum QoS 3", bytes: packet(0x82, [0, 1], [0], str("a"), [0x03]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.3.1", what: "Retain Handling 3", bytes: packet(0x82, [0, 1], [0], str("a"), [0x30]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.3-4", what: "No Local on a shared subscription", bytes: packet(0x82, [0, 1], [0], str("$share/g/a"), [0x04]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.7.1-1", what: "'#' not the last level", bytes: packet(0x82, [0, 1], [0], str("a/#/b"), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.7.1-1", what: "'#' sharing a level", version: .v3_1_1, bytes: packet(0x82, [0, 1], str("a#"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.7.1-2", what: "'+' sharing a level", bytes: packet(0x82, [0, 1], [0], str("sport+"), [0]), reason: .protocolError),
    MalformedCase(spec: "MQTT-4.7.3-1", what: "empty topic filter", bytes: packet(0x82, [0, 1], [0], str(""), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.8.2-1", what: "empty share name", bytes: packet(0x82, [0, 1], [0], str("$share//a"), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.8.2-2", what: "share name with a wildcard", bytes: packet(0x82, [0, 1], [0], str("$share/g+/a"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.8.2-2", what: "share name without a filter", bytes: packet(0x82, [0, 1], [0], str("$share/g"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-4.8.2-2", what: "share name followed by an empty filter", bytes: packet(0x82, [0, 1], [0], str("$share/g/"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.2.1.2", what: "Subscription Identifier 0", bytes: packet(0x82, [0, 1], props(0x0B, 0x00), str("a"), [0]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.8.2.1.2", what: "Subscription Identifier twice",
        bytes: packet(0x82, [0, 1], props(0x0B, 0x01, 0x0B, 0x02), str("a"), [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-1.5.5-1", what: "Subscription Identifier of five bytes",
        bytes: packet(0x82, [0, 1], props(0x0B, 0x80, 0x80, 0x80, 0x80, 0x01), str("a"), [0]), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.8.3", what: "topic filter without its options byte", bytes: packet(0x82, [0, 1], [0], str("a")),
        reason: .malformedPacket),

    // UNSUBSCRIBE
    MalformedCase(
        spec: "MQTT-3.10.1-1", what: "UNSUBSCRIBE with flags 0000", bytes: packet(0xA0, [0, 1], [0], str("a")), reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.10.3-2", what: "UNSUBSCRIBE without topic filters", bytes: packet(0xA2, [0, 1], [0]), reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.10.3-2", what: "UNSUBSCRIBE without topic filters", version: .v3_1_1, bytes: packet(0xA2, [0, 1]),
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-2.2.2-2", what: "Subscription Identifier in UNSUBSCRIBE", bytes: packet(0xA2, [0, 1], props(0x0B, 0x01), str("a")),
        reason: .malformedPacket),

    // PINGREQ, DISCONNECT, AUTH
    MalformedCase(spec: "MQTT-3.12", what: "PINGREQ with a body", bytes: [0xC0, 0x01, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-2.1.3-1", what: "PINGREQ with flags 0001", bytes: [0xC1, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.14.1-1", what: "DISCONNECT with flags 0001", bytes: [0xE1, 0x00], reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.14", what: "3.1.1 DISCONNECT with a body", version: .v3_1_1, bytes: [0xE0, 0x01, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.14.2-1", what: "DISCONNECT reason code 0x03", bytes: [0xE0, 0x01, 0x03], reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.14.2-1", what: "client sends DISCONNECT 0x8B (server only)", bytes: [0xE0, 0x01, 0x8B], reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.14.2-1", what: "server sends DISCONNECT 0x04 (client only)", role: .client, bytes: [0xE0, 0x01, 0x04],
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.14.2-2", what: "server DISCONNECT with Session Expiry Interval", role: .client,
        bytes: [0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 1], reason: .protocolError),
    MalformedCase(spec: "MQTT-3.15.1-1", what: "AUTH with flags 0001", bytes: [0xF1, 0x00], reason: .malformedPacket),
    MalformedCase(spec: "MQTT-3.15.2-1", what: "AUTH reason code 0x01", bytes: [0xF0, 0x01, 0x01], reason: .protocolError),

    // Client side: CONNACK, SUBACK
    MalformedCase(
        spec: "MQTT-3.2.2-1", what: "CONNACK reserved flags", version: .v3_1_1, role: .client, bytes: [0x20, 0x02, 0x02, 0x00],
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.2.2-6", what: "Session Present with a failure code", role: .client, bytes: [0x20, 0x03, 0x01, 0x87, 0x00],
        reason: .protocolError),
    MalformedCase(
        spec: "MQTT-3.2.2-8", what: "CONNACK reason code 0x10", role: .client, bytes: [0x20, 0x03, 0x00, 0x10, 0x00], reason: .protocolError
    ),
    MalformedCase(
        spec: "MQTT-3.2.2.3", what: "CONNACK return code 6", version: .v3_1_1, role: .client, bytes: [0x20, 0x02, 0x00, 0x06],
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.9.3-2", what: "SUBACK return code 0x03", version: .v3_1_1, role: .client, bytes: [0x90, 0x03, 0x00, 0x01, 0x03],
        reason: .malformedPacket),
    MalformedCase(
        spec: "MQTT-3.2.2.3.4", what: "Maximum QoS 2 in CONNACK", role: .client, bytes: [0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02],
        reason: .protocolError)
]

@Suite("Malformed and protocol-error packets")
struct MalformedPacketTests {
    @Test("each violation gets its reason code", arguments: malformedCases)
    func violation(_ testCase: MalformedCase) throws {
        var buffer = ByteBuffer(bytes: testCase.bytes)
        var decoder = MQTTPacketDecoder(role: testCase.role, version: testCase.bytes.first! >> 4 == 1 ? nil : testCase.version)
        let error = #expect(throws: MQTTCodecError.self) {
            _ = try decoder.next(from: &buffer)
        }
        #expect(error?.reasonCode == testCase.reason, "\(String(describing: error))")
        #expect(error?.connectReturnCode == testCase.connectReturnCode)
    }

    @Test("[MQTT-3.1.0-1] a first packet other than CONNECT is a protocol error")
    func firstPacketMustBeConnect() {
        var buffer = ByteBuffer(bytes: [0xC0, 0x00])
        var decoder = MQTTPacketDecoder(role: .server)
        let error = #expect(throws: MQTTCodecError.self) { _ = try decoder.next(from: &buffer) }
        #expect(error?.reasonCode == .protocolError)
        #expect(error?.specID == "MQTT-3.1.0-1")
    }

    @Test("[MQTT-3.1.2-2] a CONNECT error after the level carries the version, so the answer can be a 5.0 CONNACK")
    func connectErrorCarriesVersion() {
        var buffer = ByteBuffer(bytes: connect(flags: 0x03))
        var decoder = MQTTPacketDecoder(role: .server)
        let error = #expect(throws: MQTTCodecError.self) { _ = try decoder.next(from: &buffer) }
        #expect(error?.protocolVersion == .v5)
    }

    @Test("[MQTT-3.2.2-15] a declared length above the maximum is refused before the body arrives")
    func tooLargeBeforeBuffering() {
        // Only the fixed header of a 10 MB PUBLISH has arrived.
        var buffer = ByteBuffer(bytes: [0x30, 0x80, 0xAD, 0xE2, 0x04])
        let error = #expect(throws: MQTTCodecError.self) {
            _ = try MQTTFrame.read(from: &buffer, maximumPacketSize: 1 << 20)
        }
        #expect(error?.reasonCode == .packetTooLarge)
    }

    @Test("a packet exactly at the maximum size is accepted")
    func atMaximumSize() throws {
        let body = [UInt8](repeating: 0x61, count: 100)
        var buffer = ByteBuffer(bytes: [0x30, 100] + body)
        let frame = try MQTTFrame.read(from: &buffer, maximumPacketSize: 102)
        #expect(frame?.body.readableBytes == 100)
    }

    @Test("MQTT 3.1 tolerates DUP on PUBREL, SUBSCRIBE and UNSUBSCRIBE retries; 3.1.1 does not")
    func dupOnQoS1Packets31() throws {
        var old = ByteBuffer(bytes: [0x6A, 0x02, 0x00, 0x01])
        var decoder = MQTTPacketDecoder(role: .server, version: .v3_1)
        #expect(try decoder.next(from: &old) == .pubrel(MQTTAck(packetID: 1)))
        var new = ByteBuffer(bytes: [0x6A, 0x02, 0x00, 0x01])
        var strict = MQTTPacketDecoder(role: .server, version: .v3_1_1)
        #expect(throws: MQTTCodecError.self) { try strict.next(from: &new) }
    }

    @Test("an incomplete packet waits for more bytes and consumes nothing")
    func incomplete() throws {
        var buffer = ByteBuffer(bytes: [0x30, 0x05, 0x00, 0x01])
        #expect(try MQTTFrame.read(from: &buffer, maximumPacketSize: 100) == nil)
        #expect(buffer.readableBytes == 4)
        var header = ByteBuffer(bytes: [0x30, 0x80])
        #expect(try MQTTFrame.read(from: &header, maximumPacketSize: 1000) == nil)
    }

    @Test("[MQTT-1.5.4-3] a BOM in a string is kept, not stripped")
    func byteOrderMarkKept() throws {
        var buffer = ByteBuffer(bytes: packet(0x30, raw([0xEF, 0xBB, 0xBF, 0x61]), [0]))
        var decoder = MQTTPacketDecoder(role: .server, version: .v5)
        guard case .publish(let publish) = try decoder.next(from: &buffer) else {
            Issue.record("not a PUBLISH")
            return
        }
        #expect(publish.topic == "\u{FEFF}a")
    }
}
