public import MQTTCodec
import NIOCore

/// One control packet written out byte by byte from the MQTT specifications, with the packet
/// value the codec must decode it to and encode back to exactly these bytes.
public struct GoldenPacket: Sendable, CustomStringConvertible {
    /// A unique, human-readable name, e.g. "5.0 PUBACK reason code only".
    public var name: String
    public var version: MQTTProtocolVersion
    /// The role that DECODES the packet: `.server` for what clients send, `.client` for what
    /// servers send.
    public var role: MQTTRole
    public var packet: MQTTPacket
    /// The whole packet on the wire, fixed header included.
    public var bytes: [UInt8]

    public init(name: String, version: MQTTProtocolVersion, role: MQTTRole, packet: MQTTPacket, bytes: [UInt8]) {
        (self.name, self.version, self.role, self.packet, self.bytes) = (name, version, role, packet, bytes)
    }

    public var description: String { name }
}

/// Hand-written packets of every control packet type of MQTT 3.1, 3.1.1 and 5.0.
///
/// The bytes come from the specifications (MQTT V3.1 Protocol Specification; MQTT Version
/// 3.1.1 OASIS Standard, chapters 2–3; MQTT Version 5.0 OASIS Standard, chapters 1–3), never
/// from the encoder. Each version's list starts with a CONNECT, so it can be replayed as one
/// client-to-server stream.
public enum GoldenPackets {
    public static let all: [GoldenPacket] = v3_1 + v3_1_1 + v5

    // MARK: - MQTT 3.1 (protocol name "MQIsdp", level 3)

    public static let v3_1: [GoldenPacket] = [
        GoldenPacket(
            name: "3.1 CONNECT minimal", version: .v3_1, role: .server,
            packet: .connect(MQTTConnect(version: .v3_1, clientID: "c1", cleanStart: true, keepAlive: 60)),
            bytes: [
                0x10, 0x10,  // CONNECT, remaining length 16
                0x00, 0x06, 0x4D, 0x51, 0x49, 0x73, 0x64, 0x70,  // protocol name "MQIsdp"
                0x03,  // protocol version 3
                0x02,  // connect flags: clean session
                0x00, 0x3C,  // keep alive 60 s
                0x00, 0x02, 0x63, 0x31  // client id "c1"
            ]),
        GoldenPacket(
            name: "3.1 CONNECT with will, user name and password", version: .v3_1, role: .server,
            packet: .connect(
                MQTTConnect(
                    version: .v3_1, clientID: "sensor", cleanStart: true, keepAlive: 30,
                    username: "user", password: bytes("pass"),
                    will: MQTTWill(topic: "status", payload: bytes("gone"), qos: .atLeastOnce, retain: true))),
            bytes: [
                0x10, 0x2E,  // CONNECT, remaining length 46
                0x00, 0x06, 0x4D, 0x51, 0x49, 0x73, 0x64, 0x70,  // protocol name "MQIsdp"
                0x03,  // protocol version 3
                0xEE,  // flags: user name, password, will retain, will QoS 1, will, clean session
                0x00, 0x1E,  // keep alive 30 s
                0x00, 0x06, 0x73, 0x65, 0x6E, 0x73, 0x6F, 0x72,  // client id "sensor"
                0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73,  // will topic "status"
                0x00, 0x04, 0x67, 0x6F, 0x6E, 0x65,  // will message "gone"
                0x00, 0x04, 0x75, 0x73, 0x65, 0x72,  // user name "user"
                0x00, 0x04, 0x70, 0x61, 0x73, 0x73  // password "pass"
            ]),
        GoldenPacket(
            name: "3.1 CONNECT with user name only, no clean session", version: .v3_1, role: .server,
            packet: .connect(MQTTConnect(version: .v3_1, clientID: "c1", cleanStart: false, keepAlive: 0, username: "u")),
            bytes: [
                0x10, 0x13,  // CONNECT, remaining length 19
                0x00, 0x06, 0x4D, 0x51, 0x49, 0x73, 0x64, 0x70,  // protocol name "MQIsdp"
                0x03,  // protocol version 3
                0x80,  // connect flags: user name
                0x00, 0x00,  // keep alive off
                0x00, 0x02, 0x63, 0x31,  // client id "c1"
                0x00, 0x01, 0x75  // user name "u"
            ]),
        GoldenPacket(
            name: "3.1 CONNACK accepted", version: .v3_1, role: .client,
            packet: .connack(MQTTConnAck()),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // reserved (topic name compression response, unused)
                0x00  // return code 0: connection accepted
            ]),
        GoldenPacket(
            name: "3.1 CONNACK identifier rejected", version: .v3_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .clientIdentifierNotValid)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // reserved
                0x02  // return code 2: identifier rejected
            ]),
        GoldenPacket(
            name: "3.1 CONNACK bad user name or password", version: .v3_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .badUserNameOrPassword)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // reserved
                0x04  // return code 4: bad user name or password
            ]),
        GoldenPacket(
            name: "3.1 PUBLISH QoS 0", version: .v3_1, role: .client,
            packet: .publish(MQTTPublish(topic: "a/b", payload: bytes("hi"))),
            bytes: [
                0x30, 0x07,  // PUBLISH QoS 0, remaining length 7
                0x00, 0x03, 0x61, 0x2F, 0x62,  // topic "a/b"
                0x68, 0x69  // payload "hi"
            ]),
        GoldenPacket(
            name: "3.1 PUBLISH QoS 1 retained", version: .v3_1, role: .server,
            packet: .publish(MQTTPublish(topic: "t", payload: bytes("x"), qos: .atLeastOnce, retain: true, packetID: 1)),
            bytes: [
                0x33, 0x06,  // PUBLISH QoS 1 retain, remaining length 6
                0x00, 0x01, 0x74,  // topic "t"
                0x00, 0x01,  // message id 1
                0x78  // payload "x"
            ]),
        GoldenPacket(
            name: "3.1 PUBLISH QoS 2 duplicate", version: .v3_1, role: .client,
            packet: .publish(MQTTPublish(topic: "t/1", payload: bytes("ok"), qos: .exactlyOnce, dup: true, packetID: 0x1234)),
            bytes: [
                0x3C, 0x09,  // PUBLISH DUP QoS 2, remaining length 9
                0x00, 0x03, 0x74, 0x2F, 0x31,  // topic "t/1"
                0x12, 0x34,  // message id 0x1234
                0x6F, 0x6B  // payload "ok"
            ]),
        GoldenPacket(
            name: "3.1 PUBACK", version: .v3_1, role: .server,
            packet: .puback(MQTTAck(packetID: 1)),
            bytes: [
                0x40, 0x02,  // PUBACK, remaining length 2
                0x00, 0x01  // message id 1
            ]),
        GoldenPacket(
            name: "3.1 PUBREC", version: .v3_1, role: .client,
            packet: .pubrec(MQTTAck(packetID: 0x1234)),
            bytes: [
                0x50, 0x02,  // PUBREC, remaining length 2
                0x12, 0x34  // message id 0x1234
            ]),
        GoldenPacket(
            name: "3.1 PUBREL", version: .v3_1, role: .server,
            packet: .pubrel(MQTTAck(packetID: 0x1234)),
            bytes: [
                0x62, 0x02,  // PUBREL (QoS 1 flags), remaining length 2
                0x12, 0x34  // message id 0x1234
            ]),
        GoldenPacket(
            name: "3.1 PUBCOMP", version: .v3_1, role: .client,
            packet: .pubcomp(MQTTAck(packetID: 0x1234)),
            bytes: [
                0x70, 0x02,  // PUBCOMP, remaining length 2
                0x12, 0x34  // message id 0x1234
            ]),
        GoldenPacket(
            name: "3.1 SUBSCRIBE two filters", version: .v3_1, role: .server,
            packet: .subscribe(
                MQTTSubscribe(
                    packetID: 10,
                    subscriptions: [
                        MQTTSubscription(filter: filter("a/+"), qos: .atLeastOnce),
                        MQTTSubscription(filter: filter("b/#"), qos: .exactlyOnce)
                    ])),
            bytes: [
                0x82, 0x0E,  // SUBSCRIBE (QoS 1 flags), remaining length 14
                0x00, 0x0A,  // message id 10
                0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
                0x01,  // requested QoS 1
                0x00, 0x03, 0x62, 0x2F, 0x23,  // topic filter "b/#"
                0x02  // requested QoS 2
            ]),
        GoldenPacket(
            name: "3.1 SUBACK", version: .v3_1, role: .client,
            packet: .suback(MQTTSubAck(packetID: 10, reasonCodes: [.grantedQoS1, .grantedQoS2])),
            bytes: [
                0x90, 0x04,  // SUBACK, remaining length 4
                0x00, 0x0A,  // message id 10
                0x01,  // granted QoS 1
                0x02  // granted QoS 2
            ]),
        GoldenPacket(
            name: "3.1 UNSUBSCRIBE", version: .v3_1, role: .server,
            packet: .unsubscribe(MQTTUnsubscribe(packetID: 11, filters: [filter("a/+"), filter("b/#")])),
            bytes: [
                0xA2, 0x0C,  // UNSUBSCRIBE (QoS 1 flags), remaining length 12
                0x00, 0x0B,  // message id 11
                0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
                0x00, 0x03, 0x62, 0x2F, 0x23  // topic filter "b/#"
            ]),
        GoldenPacket(
            name: "3.1 UNSUBACK", version: .v3_1, role: .client,
            packet: .unsuback(MQTTUnsubAck(packetID: 11)),
            bytes: [
                0xB0, 0x02,  // UNSUBACK, remaining length 2
                0x00, 0x0B  // message id 11
            ]),
        GoldenPacket(
            name: "3.1 PINGREQ", version: .v3_1, role: .server,
            packet: .pingreq,
            bytes: [
                0xC0, 0x00  // PINGREQ, remaining length 0
            ]),
        GoldenPacket(
            name: "3.1 PINGRESP", version: .v3_1, role: .client,
            packet: .pingresp,
            bytes: [
                0xD0, 0x00  // PINGRESP, remaining length 0
            ]),
        GoldenPacket(
            name: "3.1 DISCONNECT", version: .v3_1, role: .server,
            packet: .disconnect(MQTTDisconnect()),
            bytes: [
                0xE0, 0x00  // DISCONNECT, remaining length 0
            ])
    ]

    // MARK: - MQTT 3.1.1 (protocol name "MQTT", level 4)

    public static let v3_1_1: [GoldenPacket] = [
        GoldenPacket(
            name: "3.1.1 CONNECT minimal, empty client id", version: .v3_1_1, role: .server,
            packet: .connect(MQTTConnect(version: .v3_1_1, clientID: "", cleanStart: true, keepAlive: 60)),
            bytes: [
                0x10, 0x0C,  // CONNECT, remaining length 12
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x04,  // protocol level 4
                0x02,  // connect flags: clean session
                0x00, 0x3C,  // keep alive 60 s
                0x00, 0x00  // client id "" (server assigns one)
            ]),
        GoldenPacket(
            name: "3.1.1 CONNECT with will, user name and password", version: .v3_1_1, role: .server,
            packet: .connect(
                MQTTConnect(
                    version: .v3_1_1, clientID: "dev42", cleanStart: false, keepAlive: 300,
                    username: "alice", password: ByteBuffer(bytes: [0x00, 0xFF, 0x10]),
                    will: MQTTWill(topic: "dev/42/state", payload: bytes("offline"), qos: .exactlyOnce, retain: false))),
            bytes: [
                0x10, 0x34,  // CONNECT, remaining length 52
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x04,  // protocol level 4
                0xD4,  // flags: user name, password, will QoS 2, will (no clean session)
                0x01, 0x2C,  // keep alive 300 s
                0x00, 0x05, 0x64, 0x65, 0x76, 0x34, 0x32,  // client id "dev42"
                0x00, 0x0C, 0x64, 0x65, 0x76, 0x2F, 0x34, 0x32, 0x2F, 0x73, 0x74, 0x61, 0x74, 0x65,  // will topic "dev/42/state"
                0x00, 0x07, 0x6F, 0x66, 0x66, 0x6C, 0x69, 0x6E, 0x65,  // will message "offline"
                0x00, 0x05, 0x61, 0x6C, 0x69, 0x63, 0x65,  // user name "alice"
                0x00, 0x03, 0x00, 0xFF, 0x10  // password, binary 00 FF 10
            ]),
        GoldenPacket(
            name: "3.1.1 CONNECT with retained will, empty will message", version: .v3_1_1, role: .server,
            packet: .connect(
                MQTTConnect(
                    version: .v3_1_1, clientID: "c", cleanStart: true, keepAlive: 10,
                    will: MQTTWill(topic: "w", payload: ByteBuffer(), qos: .atMostOnce, retain: true))),
            bytes: [
                0x10, 0x12,  // CONNECT, remaining length 18
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x04,  // protocol level 4
                0x26,  // flags: will retain, will QoS 0, will, clean session
                0x00, 0x0A,  // keep alive 10 s
                0x00, 0x01, 0x63,  // client id "c"
                0x00, 0x01, 0x77,  // will topic "w"
                0x00, 0x00  // will message, zero length
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK accepted", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck()),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags: no session present
                0x00  // return code 0: connection accepted
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK session present", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(sessionPresent: true)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x01,  // acknowledge flags: session present
                0x00  // return code 0: connection accepted
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK unacceptable protocol version", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .unsupportedProtocolVersion)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags
                0x01  // return code 1: unacceptable protocol version
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK identifier rejected", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .clientIdentifierNotValid)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags
                0x02  // return code 2: identifier rejected
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK server unavailable", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .serverUnavailable)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags
                0x03  // return code 3: server unavailable
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK bad user name or password", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .badUserNameOrPassword)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags
                0x04  // return code 4: bad user name or password
            ]),
        GoldenPacket(
            name: "3.1.1 CONNACK not authorized", version: .v3_1_1, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .notAuthorized)),
            bytes: [
                0x20, 0x02,  // CONNACK, remaining length 2
                0x00,  // acknowledge flags
                0x05  // return code 5: not authorized
            ]),
        GoldenPacket(
            name: "3.1.1 PUBLISH QoS 0", version: .v3_1_1, role: .server,
            packet: .publish(MQTTPublish(topic: "sensors/temp", payload: bytes("21.5"))),
            bytes: [
                0x30, 0x12,  // PUBLISH QoS 0, remaining length 18
                0x00, 0x0C, 0x73, 0x65, 0x6E, 0x73, 0x6F, 0x72, 0x73, 0x2F, 0x74, 0x65, 0x6D, 0x70,  // topic "sensors/temp"
                0x32, 0x31, 0x2E, 0x35  // payload "21.5"
            ]),
        GoldenPacket(
            name: "3.1.1 PUBLISH QoS 1 empty payload", version: .v3_1_1, role: .client,
            packet: .publish(MQTTPublish(topic: "a", payload: ByteBuffer(), qos: .atLeastOnce, packetID: 0xFFFF)),
            bytes: [
                0x32, 0x05,  // PUBLISH QoS 1, remaining length 5
                0x00, 0x01, 0x61,  // topic "a"
                0xFF, 0xFF  // packet id 65535
            ]),
        GoldenPacket(
            name: "3.1.1 PUBLISH QoS 2 retained duplicate", version: .v3_1_1, role: .server,
            packet: .publish(
                MQTTPublish(
                    topic: "x/y", payload: ByteBuffer(bytes: [0x00, 0x01, 0xFE]),
                    qos: .exactlyOnce, retain: true, dup: true, packetID: 0x0102)),
            bytes: [
                0x3D, 0x0A,  // PUBLISH DUP QoS 2 retain, remaining length 10
                0x00, 0x03, 0x78, 0x2F, 0x79,  // topic "x/y"
                0x01, 0x02,  // packet id 258
                0x00, 0x01, 0xFE  // binary payload
            ]),
        GoldenPacket(
            name: "3.1.1 PUBACK", version: .v3_1_1, role: .client,
            packet: .puback(MQTTAck(packetID: 0xFFFF)),
            bytes: [
                0x40, 0x02,  // PUBACK, remaining length 2
                0xFF, 0xFF  // packet id 65535
            ]),
        GoldenPacket(
            name: "3.1.1 PUBREC", version: .v3_1_1, role: .server,
            packet: .pubrec(MQTTAck(packetID: 0x0102)),
            bytes: [
                0x50, 0x02,  // PUBREC, remaining length 2
                0x01, 0x02  // packet id 258
            ]),
        GoldenPacket(
            name: "3.1.1 PUBREL", version: .v3_1_1, role: .client,
            packet: .pubrel(MQTTAck(packetID: 0x0102)),
            bytes: [
                0x62, 0x02,  // PUBREL (flags 0010), remaining length 2
                0x01, 0x02  // packet id 258
            ]),
        GoldenPacket(
            name: "3.1.1 PUBCOMP", version: .v3_1_1, role: .server,
            packet: .pubcomp(MQTTAck(packetID: 0x0102)),
            bytes: [
                0x70, 0x02,  // PUBCOMP, remaining length 2
                0x01, 0x02  // packet id 258
            ]),
        GoldenPacket(
            name: "3.1.1 SUBSCRIBE three filters", version: .v3_1_1, role: .server,
            packet: .subscribe(
                MQTTSubscribe(
                    packetID: 0x0101,
                    subscriptions: [
                        MQTTSubscription(filter: filter("#"), qos: .atMostOnce),
                        MQTTSubscription(filter: filter("+/x"), qos: .atLeastOnce),
                        MQTTSubscription(filter: filter("sport/tennis/+"), qos: .exactlyOnce)
                    ])),
            bytes: [
                0x82, 0x1D,  // SUBSCRIBE (flags 0010), remaining length 29
                0x01, 0x01,  // packet id 257
                0x00, 0x01, 0x23,  // topic filter "#"
                0x00,  // requested QoS 0
                0x00, 0x03, 0x2B, 0x2F, 0x78,  // topic filter "+/x"
                0x01,  // requested QoS 1
                0x00, 0x0E, 0x73, 0x70, 0x6F, 0x72, 0x74, 0x2F, 0x74, 0x65, 0x6E, 0x6E, 0x69, 0x73, 0x2F, 0x2B,  // "sport/tennis/+"
                0x02  // requested QoS 2
            ]),
        GoldenPacket(
            name: "3.1.1 SUBACK with failure", version: .v3_1_1, role: .client,
            packet: .suback(MQTTSubAck(packetID: 0x0101, reasonCodes: [.grantedQoS0, .grantedQoS1, .grantedQoS2, .failure])),
            bytes: [
                0x90, 0x06,  // SUBACK, remaining length 6
                0x01, 0x01,  // packet id 257
                0x00,  // success, maximum QoS 0
                0x01,  // success, maximum QoS 1
                0x02,  // success, maximum QoS 2
                0x80  // failure
            ]),
        GoldenPacket(
            name: "3.1.1 UNSUBSCRIBE", version: .v3_1_1, role: .server,
            packet: .unsubscribe(MQTTUnsubscribe(packetID: 0x0102, filters: [filter("#"), filter("sport/tennis/+")])),
            bytes: [
                0xA2, 0x15,  // UNSUBSCRIBE (flags 0010), remaining length 21
                0x01, 0x02,  // packet id 258
                0x00, 0x01, 0x23,  // topic filter "#"
                0x00, 0x0E, 0x73, 0x70, 0x6F, 0x72, 0x74, 0x2F, 0x74, 0x65, 0x6E, 0x6E, 0x69, 0x73, 0x2F, 0x2B  // "sport/tennis/+"
            ]),
        GoldenPacket(
            name: "3.1.1 UNSUBACK", version: .v3_1_1, role: .client,
            packet: .unsuback(MQTTUnsubAck(packetID: 0x0102)),
            bytes: [
                0xB0, 0x02,  // UNSUBACK, remaining length 2
                0x01, 0x02  // packet id 258 (no payload in 3.1.1)
            ]),
        GoldenPacket(
            name: "3.1.1 PINGREQ", version: .v3_1_1, role: .server,
            packet: .pingreq,
            bytes: [
                0xC0, 0x00  // PINGREQ, remaining length 0
            ]),
        GoldenPacket(
            name: "3.1.1 PINGRESP", version: .v3_1_1, role: .client,
            packet: .pingresp,
            bytes: [
                0xD0, 0x00  // PINGRESP, remaining length 0
            ]),
        GoldenPacket(
            name: "3.1.1 DISCONNECT", version: .v3_1_1, role: .server,
            packet: .disconnect(MQTTDisconnect()),
            bytes: [
                0xE0, 0x00  // DISCONNECT, remaining length 0
            ])
    ]

    // MARK: - MQTT 5.0 (protocol name "MQTT", level 5)

    public static let v5: [GoldenPacket] = v5Connect + v5Publish + v5Acks + v5Subscribe + v5Other

    static let v5Connect: [GoldenPacket] = [
        GoldenPacket(
            name: "5.0 CONNECT minimal", version: .v5, role: .server,
            packet: .connect(MQTTConnect(version: .v5, clientID: "", cleanStart: true, keepAlive: 60)),
            bytes: [
                0x10, 0x0D,  // CONNECT, remaining length 13
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x05,  // protocol version 5
                0x02,  // connect flags: clean start
                0x00, 0x3C,  // keep alive 60 s
                0x00,  // property length 0
                0x00, 0x00  // client id "" (server assigns one)
            ]),
        GoldenPacket(
            name: "5.0 CONNECT with properties, will properties, user name and password", version: .v5, role: .server,
            packet: .connect(
                MQTTConnect(
                    version: .v5, clientID: "client-5", cleanStart: false, keepAlive: 180,
                    username: "bob", password: bytes("secret-password"),
                    will: MQTTWill(
                        topic: "lwt", payload: bytes("bye"), qos: .atLeastOnce, retain: false,
                        properties: [
                            .willDelayInterval(5),
                            .payloadFormatIndicator(1),
                            .messageExpiryInterval(600),
                            .contentType("text/plain"),
                            .responseTopic("r"),
                            .correlationData(ByteBuffer(bytes: [0xCA, 0xFE])),
                            .userProperty("w", "1")
                        ]),
                    properties: [
                        .sessionExpiryInterval(3600),
                        .receiveMaximum(20),
                        .maximumPacketSize(65536),
                        .topicAliasMaximum(10),
                        .requestResponseInformation(1),
                        .requestProblemInformation(0),
                        .userProperty("k", "v"),
                        .authenticationMethod("PLAIN"),
                        .authenticationData(ByteBuffer(bytes: [0x01, 0x02]))
                    ])),
            bytes: [
                0x10, 0x87, 0x01,  // CONNECT, remaining length 135 (two-byte variable byte integer)
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x05,  // protocol version 5
                0xCC,  // flags: user name, password, will QoS 1, will (no clean start)
                0x00, 0xB4,  // keep alive 180 s
                0x28,  // property length 40
                0x11, 0x00, 0x00, 0x0E, 0x10,  // Session Expiry Interval 3600
                0x21, 0x00, 0x14,  // Receive Maximum 20
                0x27, 0x00, 0x01, 0x00, 0x00,  // Maximum Packet Size 65536
                0x22, 0x00, 0x0A,  // Topic Alias Maximum 10
                0x19, 0x01,  // Request Response Information 1
                0x17, 0x00,  // Request Problem Information 0
                0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,  // User Property "k" = "v"
                0x15, 0x00, 0x05, 0x50, 0x4C, 0x41, 0x49, 0x4E,  // Authentication Method "PLAIN"
                0x16, 0x00, 0x02, 0x01, 0x02,  // Authentication Data 01 02
                0x00, 0x08, 0x63, 0x6C, 0x69, 0x65, 0x6E, 0x74, 0x2D, 0x35,  // client id "client-5"
                0x29,  // will property length 41
                0x18, 0x00, 0x00, 0x00, 0x05,  // Will Delay Interval 5
                0x01, 0x01,  // Payload Format Indicator 1 (UTF-8)
                0x02, 0x00, 0x00, 0x02, 0x58,  // Message Expiry Interval 600
                0x03, 0x00, 0x0A, 0x74, 0x65, 0x78, 0x74, 0x2F, 0x70, 0x6C, 0x61, 0x69, 0x6E,  // Content Type "text/plain"
                0x08, 0x00, 0x01, 0x72,  // Response Topic "r"
                0x09, 0x00, 0x02, 0xCA, 0xFE,  // Correlation Data CA FE
                0x26, 0x00, 0x01, 0x77, 0x00, 0x01, 0x31,  // User Property "w" = "1"
                0x00, 0x03, 0x6C, 0x77, 0x74,  // will topic "lwt"
                0x00, 0x03, 0x62, 0x79, 0x65,  // will payload "bye"
                0x00, 0x03, 0x62, 0x6F, 0x62,  // user name "bob"
                // password "secret-password"
                0x00, 0x0F, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x2D, 0x70, 0x61, 0x73, 0x73, 0x77, 0x6F, 0x72, 0x64
            ]),
        GoldenPacket(
            name: "5.0 CONNECT with password and no user name", version: .v5, role: .server,
            packet: .connect(
                MQTTConnect(
                    version: .v5, clientID: "p", cleanStart: true, keepAlive: 0,
                    password: ByteBuffer(bytes: [0x01]))),
            bytes: [
                0x10, 0x11,  // CONNECT, remaining length 17
                0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
                0x05,  // protocol version 5
                0x42,  // flags: password, clean start (5.0 allows a password alone)
                0x00, 0x00,  // keep alive off
                0x00,  // property length 0
                0x00, 0x01, 0x70,  // client id "p"
                0x00, 0x01, 0x01  // password, binary 01
            ]),
        GoldenPacket(
            name: "5.0 CONNACK success", version: .v5, role: .client,
            packet: .connack(MQTTConnAck()),
            bytes: [
                0x20, 0x03,  // CONNACK, remaining length 3
                0x00,  // acknowledge flags: no session present
                0x00,  // reason code 0x00 Success
                0x00  // property length 0
            ]),
        GoldenPacket(
            name: "5.0 CONNACK session present", version: .v5, role: .client,
            packet: .connack(MQTTConnAck(sessionPresent: true)),
            bytes: [
                0x20, 0x03,  // CONNACK, remaining length 3
                0x01,  // acknowledge flags: session present
                0x00,  // reason code 0x00 Success
                0x00  // property length 0
            ]),
        GoldenPacket(
            name: "5.0 CONNACK bad authentication method", version: .v5, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .badAuthenticationMethod)),
            bytes: [
                0x20, 0x03,  // CONNACK, remaining length 3
                0x00,  // acknowledge flags
                0x8C,  // reason code 0x8C Bad authentication method
                0x00  // property length 0
            ]),
        GoldenPacket(
            name: "5.0 CONNACK not authorized with reason string", version: .v5, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .notAuthorized, properties: [.reasonString("denied")])),
            bytes: [
                0x20, 0x0C,  // CONNACK, remaining length 12
                0x00,  // acknowledge flags
                0x87,  // reason code 0x87 Not authorized
                0x09,  // property length 9
                0x1F, 0x00, 0x06, 0x64, 0x65, 0x6E, 0x69, 0x65, 0x64  // Reason String "denied"
            ]),
        GoldenPacket(
            name: "5.0 CONNACK server moved with server reference", version: .v5, role: .client,
            packet: .connack(MQTTConnAck(reasonCode: .serverMoved, properties: [.serverReference("b2")])),
            bytes: [
                0x20, 0x08,  // CONNACK, remaining length 8
                0x00,  // acknowledge flags
                0x9D,  // reason code 0x9D Server moved
                0x05,  // property length 5
                0x1C, 0x00, 0x02, 0x62, 0x32  // Server Reference "b2"
            ]),
        GoldenPacket(
            name: "5.0 CONNACK with properties", version: .v5, role: .client,
            packet: .connack(
                MQTTConnAck(
                    sessionPresent: true,
                    properties: [
                        .sessionExpiryInterval(0xFFFF_FFFF),
                        .receiveMaximum(100),
                        .maximumQoS(1),
                        .retainAvailable(0),
                        .maximumPacketSize(1_048_576),
                        .assignedClientIdentifier("auto-1"),
                        .topicAliasMaximum(5),
                        .reasonString("ok"),
                        .userProperty("region", "eu"),
                        .wildcardSubscriptionAvailable(1),
                        .subscriptionIdentifierAvailable(1),
                        .sharedSubscriptionAvailable(0),
                        .serverKeepAlive(30),
                        .responseInformation("resp/"),
                        .authenticationMethod("PLAIN"),
                        .authenticationData(ByteBuffer(bytes: [0x00]))
                    ])),
            bytes: [
                0x20, 0x4F,  // CONNACK, remaining length 79
                0x01,  // acknowledge flags: session present
                0x00,  // reason code 0x00 Success
                0x4C,  // property length 76
                0x11, 0xFF, 0xFF, 0xFF, 0xFF,  // Session Expiry Interval 0xFFFFFFFF (never expires)
                0x21, 0x00, 0x64,  // Receive Maximum 100
                0x24, 0x01,  // Maximum QoS 1
                0x25, 0x00,  // Retain Available 0
                0x27, 0x00, 0x10, 0x00, 0x00,  // Maximum Packet Size 1048576
                0x12, 0x00, 0x06, 0x61, 0x75, 0x74, 0x6F, 0x2D, 0x31,  // Assigned Client Identifier "auto-1"
                0x22, 0x00, 0x05,  // Topic Alias Maximum 5
                0x1F, 0x00, 0x02, 0x6F, 0x6B,  // Reason String "ok"
                0x26, 0x00, 0x06, 0x72, 0x65, 0x67, 0x69, 0x6F, 0x6E, 0x00, 0x02, 0x65, 0x75,  // User Property "region" = "eu"
                0x28, 0x01,  // Wildcard Subscription Available 1
                0x29, 0x01,  // Subscription Identifier Available 1
                0x2A, 0x00,  // Shared Subscription Available 0
                0x13, 0x00, 0x1E,  // Server Keep Alive 30
                0x1A, 0x00, 0x05, 0x72, 0x65, 0x73, 0x70, 0x2F,  // Response Information "resp/"
                0x15, 0x00, 0x05, 0x50, 0x4C, 0x41, 0x49, 0x4E,  // Authentication Method "PLAIN"
                0x16, 0x00, 0x01, 0x00  // Authentication Data 00
            ])
    ]

    static let v5Publish: [GoldenPacket] = [
        GoldenPacket(
            name: "5.0 PUBLISH QoS 0 without properties", version: .v5, role: .server,
            packet: .publish(MQTTPublish(topic: "a/b", payload: bytes("hi"))),
            bytes: [
                0x30, 0x08,  // PUBLISH QoS 0, remaining length 8
                0x00, 0x03, 0x61, 0x2F, 0x62,  // topic "a/b"
                0x00,  // property length 0
                0x68, 0x69  // payload "hi"
            ]),
        GoldenPacket(
            name: "5.0 PUBLISH QoS 1 with properties", version: .v5, role: .server,
            packet: .publish(
                MQTTPublish(
                    topic: "t", payload: bytes("{}"), qos: .atLeastOnce, packetID: 10,
                    properties: [
                        .payloadFormatIndicator(1),
                        .messageExpiryInterval(60),
                        .contentType("json"),
                        .responseTopic("reply"),
                        .correlationData(ByteBuffer(bytes: [0x01, 0x02, 0x03])),
                        .userProperty("a", "1"),
                        .userProperty("a", "2")
                    ])),
            bytes: [
                0x32, 0x32,  // PUBLISH QoS 1, remaining length 50
                0x00, 0x01, 0x74,  // topic "t"
                0x00, 0x0A,  // packet id 10
                0x2A,  // property length 42
                0x01, 0x01,  // Payload Format Indicator 1 (UTF-8)
                0x02, 0x00, 0x00, 0x00, 0x3C,  // Message Expiry Interval 60
                0x03, 0x00, 0x04, 0x6A, 0x73, 0x6F, 0x6E,  // Content Type "json"
                0x08, 0x00, 0x05, 0x72, 0x65, 0x70, 0x6C, 0x79,  // Response Topic "reply"
                0x09, 0x00, 0x03, 0x01, 0x02, 0x03,  // Correlation Data 01 02 03
                0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x31,  // User Property "a" = "1"
                0x26, 0x00, 0x01, 0x61, 0x00, 0x01, 0x32,  // User Property "a" = "2" (same name repeats)
                0x7B, 0x7D  // payload "{}"
            ]),
        GoldenPacket(
            name: "5.0 PUBLISH QoS 2 retained, topic alias with empty topic", version: .v5, role: .server,
            packet: .publish(
                MQTTPublish(
                    topic: "", payload: bytes("on"), qos: .exactlyOnce, retain: true,
                    packetID: 7, properties: [.topicAlias(3)])),
            bytes: [
                0x35, 0x0A,  // PUBLISH QoS 2 retain, remaining length 10
                0x00, 0x00,  // topic "" (the Topic Alias stands for it)
                0x00, 0x07,  // packet id 7
                0x03,  // property length 3
                0x23, 0x00, 0x03,  // Topic Alias 3
                0x6F, 0x6E  // payload "on"
            ]),
        GoldenPacket(
            name: "5.0 PUBLISH QoS 1 duplicate, topic alias with topic", version: .v5, role: .client,
            packet: .publish(
                MQTTPublish(
                    topic: "x", payload: ByteBuffer(), qos: .atLeastOnce, dup: true,
                    packetID: 0x8000, properties: [.topicAlias(1)])),
            bytes: [
                0x3A, 0x09,  // PUBLISH DUP QoS 1, remaining length 9
                0x00, 0x01, 0x78,  // topic "x" (sets Topic Alias 1)
                0x80, 0x00,  // packet id 32768
                0x03,  // property length 3
                0x23, 0x00, 0x01  // Topic Alias 1
                // empty payload
            ]),
        GoldenPacket(
            name: "5.0 PUBLISH with subscription identifiers", version: .v5, role: .client,
            packet: .publish(
                MQTTPublish(
                    topic: "s/1", payload: bytes("p"),
                    properties: [
                        .subscriptionIdentifier(1),
                        .subscriptionIdentifier(16_384)
                    ])),
            bytes: [
                0x30, 0x0D,  // PUBLISH QoS 0, remaining length 13
                0x00, 0x03, 0x73, 0x2F, 0x31,  // topic "s/1"
                0x06,  // property length 6
                0x0B, 0x01,  // Subscription Identifier 1
                0x0B, 0x80, 0x80, 0x01,  // Subscription Identifier 16384 (three-byte variable byte integer)
                0x70  // payload "p"
            ])
    ]

    static let v5Acks: [GoldenPacket] = [
        GoldenPacket(
            name: "5.0 PUBACK short form", version: .v5, role: .client,
            packet: .puback(MQTTAck(packetID: 10)),
            bytes: [
                0x40, 0x02,  // PUBACK, remaining length 2 (reason Success, no properties)
                0x00, 0x0A  // packet id 10
            ]),
        GoldenPacket(
            name: "5.0 PUBACK reason code only", version: .v5, role: .client,
            packet: .puback(MQTTAck(packetID: 10, reasonCode: .noMatchingSubscribers)),
            bytes: [
                0x40, 0x03,  // PUBACK, remaining length 3
                0x00, 0x0A,  // packet id 10
                0x10  // reason code 0x10 No matching subscribers
            ]),
        GoldenPacket(
            name: "5.0 PUBACK with properties", version: .v5, role: .server,
            packet: .puback(
                MQTTAck(
                    packetID: 10, reasonCode: .quotaExceeded,
                    properties: [.reasonString("full"), .userProperty("q", "1")])),
            bytes: [
                0x40, 0x12,  // PUBACK, remaining length 18
                0x00, 0x0A,  // packet id 10
                0x97,  // reason code 0x97 Quota exceeded
                0x0E,  // property length 14
                0x1F, 0x00, 0x04, 0x66, 0x75, 0x6C, 0x6C,  // Reason String "full"
                0x26, 0x00, 0x01, 0x71, 0x00, 0x01, 0x31  // User Property "q" = "1"
            ]),
        GoldenPacket(
            name: "5.0 PUBREC short form", version: .v5, role: .client,
            packet: .pubrec(MQTTAck(packetID: 7)),
            bytes: [
                0x50, 0x02,  // PUBREC, remaining length 2
                0x00, 0x07  // packet id 7
            ]),
        GoldenPacket(
            name: "5.0 PUBREC reason code only", version: .v5, role: .client,
            packet: .pubrec(MQTTAck(packetID: 7, reasonCode: .packetIdentifierInUse)),
            bytes: [
                0x50, 0x03,  // PUBREC, remaining length 3
                0x00, 0x07,  // packet id 7
                0x91  // reason code 0x91 Packet Identifier in use
            ]),
        GoldenPacket(
            name: "5.0 PUBREC with properties", version: .v5, role: .server,
            packet: .pubrec(MQTTAck(packetID: 7, properties: [.reasonString("r")])),
            bytes: [
                0x50, 0x08,  // PUBREC, remaining length 8
                0x00, 0x07,  // packet id 7
                0x00,  // reason code 0x00 Success (present because properties follow)
                0x04,  // property length 4
                0x1F, 0x00, 0x01, 0x72  // Reason String "r"
            ]),
        GoldenPacket(
            name: "5.0 PUBREL short form", version: .v5, role: .server,
            packet: .pubrel(MQTTAck(packetID: 7)),
            bytes: [
                0x62, 0x02,  // PUBREL (flags 0010), remaining length 2
                0x00, 0x07  // packet id 7
            ]),
        GoldenPacket(
            name: "5.0 PUBREL reason code only", version: .v5, role: .client,
            packet: .pubrel(MQTTAck(packetID: 7, reasonCode: .packetIdentifierNotFound)),
            bytes: [
                0x62, 0x03,  // PUBREL (flags 0010), remaining length 3
                0x00, 0x07,  // packet id 7
                0x92  // reason code 0x92 Packet Identifier not found
            ]),
        GoldenPacket(
            name: "5.0 PUBREL with properties", version: .v5, role: .server,
            packet: .pubrel(MQTTAck(packetID: 7, properties: [.userProperty("x", "y")])),
            bytes: [
                0x62, 0x0B,  // PUBREL (flags 0010), remaining length 11
                0x00, 0x07,  // packet id 7
                0x00,  // reason code 0x00 Success
                0x07,  // property length 7
                0x26, 0x00, 0x01, 0x78, 0x00, 0x01, 0x79  // User Property "x" = "y"
            ]),
        GoldenPacket(
            name: "5.0 PUBCOMP short form", version: .v5, role: .client,
            packet: .pubcomp(MQTTAck(packetID: 7)),
            bytes: [
                0x70, 0x02,  // PUBCOMP, remaining length 2
                0x00, 0x07  // packet id 7
            ]),
        GoldenPacket(
            name: "5.0 PUBCOMP reason code only", version: .v5, role: .server,
            packet: .pubcomp(MQTTAck(packetID: 7, reasonCode: .packetIdentifierNotFound)),
            bytes: [
                0x70, 0x03,  // PUBCOMP, remaining length 3
                0x00, 0x07,  // packet id 7
                0x92  // reason code 0x92 Packet Identifier not found
            ]),
        GoldenPacket(
            name: "5.0 PUBCOMP with properties", version: .v5, role: .client,
            packet: .pubcomp(
                MQTTAck(
                    packetID: 7, reasonCode: .packetIdentifierNotFound,
                    properties: [.reasonString("gone")])),
            bytes: [
                0x70, 0x0B,  // PUBCOMP, remaining length 11
                0x00, 0x07,  // packet id 7
                0x92,  // reason code 0x92 Packet Identifier not found
                0x07,  // property length 7
                0x1F, 0x00, 0x04, 0x67, 0x6F, 0x6E, 0x65  // Reason String "gone"
            ])
    ]

    static let v5Subscribe: [GoldenPacket] = [
        GoldenPacket(
            name: "5.0 SUBSCRIBE minimal", version: .v5, role: .server,
            packet: .subscribe(MQTTSubscribe(packetID: 1, subscriptions: [MQTTSubscription(filter: filter("x"), qos: .atMostOnce)])),
            bytes: [
                0x82, 0x07,  // SUBSCRIBE (flags 0010), remaining length 7
                0x00, 0x01,  // packet id 1
                0x00,  // property length 0
                0x00, 0x01, 0x78,  // topic filter "x"
                0x00  // options: QoS 0
            ]),
        GoldenPacket(
            name: "5.0 SUBSCRIBE with options, subscription identifier and shared filter", version: .v5, role: .server,
            packet: .subscribe(
                MQTTSubscribe(
                    packetID: 0x20,
                    subscriptions: [
                        MQTTSubscription(filter: filter("a/b"), qos: .atLeastOnce, noLocal: true),
                        MQTTSubscription(filter: filter("c/#"), qos: .exactlyOnce, retainAsPublished: true, retainHandling: .sendIfNew),
                        MQTTSubscription(filter: filter("$share/grp/d/+"), qos: .atMostOnce, retainHandling: .doNotSend)
                    ],
                    properties: [.subscriptionIdentifier(300), .userProperty("app", "x")])),
            bytes: [
                0x82, 0x2C,  // SUBSCRIBE (flags 0010), remaining length 44
                0x00, 0x20,  // packet id 32
                0x0C,  // property length 12
                0x0B, 0xAC, 0x02,  // Subscription Identifier 300 (two-byte variable byte integer)
                0x26, 0x00, 0x03, 0x61, 0x70, 0x70, 0x00, 0x01, 0x78,  // User Property "app" = "x"
                0x00, 0x03, 0x61, 0x2F, 0x62,  // topic filter "a/b"
                0x05,  // options: No Local, QoS 1
                0x00, 0x03, 0x63, 0x2F, 0x23,  // topic filter "c/#"
                0x1A,  // options: Retain Handling 1, Retain As Published, QoS 2
                0x00, 0x0E, 0x24, 0x73, 0x68, 0x61, 0x72, 0x65, 0x2F, 0x67, 0x72, 0x70, 0x2F, 0x64, 0x2F, 0x2B,  // "$share/grp/d/+"
                0x20  // options: Retain Handling 2, QoS 0
            ]),
        GoldenPacket(
            name: "5.0 SUBACK minimal", version: .v5, role: .client,
            packet: .suback(MQTTSubAck(packetID: 1, reasonCodes: [.grantedQoS0])),
            bytes: [
                0x90, 0x04,  // SUBACK, remaining length 4
                0x00, 0x01,  // packet id 1
                0x00,  // property length 0
                0x00  // reason code 0x00 Granted QoS 0
            ]),
        GoldenPacket(
            name: "5.0 SUBACK with reason codes and reason string", version: .v5, role: .client,
            packet: .suback(
                MQTTSubAck(
                    packetID: 0x20,
                    reasonCodes: [
                        .grantedQoS1, .grantedQoS2, .sharedSubscriptionsNotSupported,
                        .subscriptionIdentifiersNotSupported, .notAuthorized
                    ],
                    properties: [.reasonString("partial")])),
            bytes: [
                0x90, 0x12,  // SUBACK, remaining length 18
                0x00, 0x20,  // packet id 32
                0x0A,  // property length 10
                0x1F, 0x00, 0x07, 0x70, 0x61, 0x72, 0x74, 0x69, 0x61, 0x6C,  // Reason String "partial"
                0x01,  // 0x01 Granted QoS 1
                0x02,  // 0x02 Granted QoS 2
                0x9E,  // 0x9E Shared Subscriptions not supported
                0xA1,  // 0xA1 Subscription Identifiers not supported
                0x87  // 0x87 Not authorized
            ]),
        GoldenPacket(
            name: "5.0 UNSUBSCRIBE with user property", version: .v5, role: .server,
            packet: .unsubscribe(
                MQTTUnsubscribe(
                    packetID: 0x21, filters: [filter("a/b"), filter("$share/grp/d/+")],
                    properties: [.userProperty("k", "v")])),
            bytes: [
                0xA2, 0x1F,  // UNSUBSCRIBE (flags 0010), remaining length 31
                0x00, 0x21,  // packet id 33
                0x07,  // property length 7
                0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,  // User Property "k" = "v"
                0x00, 0x03, 0x61, 0x2F, 0x62,  // topic filter "a/b"
                0x00, 0x0E, 0x24, 0x73, 0x68, 0x61, 0x72, 0x65, 0x2F, 0x67, 0x72, 0x70, 0x2F, 0x64, 0x2F, 0x2B  // "$share/grp/d/+"
            ]),
        GoldenPacket(
            name: "5.0 UNSUBACK with reason codes", version: .v5, role: .client,
            packet: .unsuback(MQTTUnsubAck(packetID: 0x21, reasonCodes: [.success, .noSubscriptionExisted])),
            bytes: [
                0xB0, 0x05,  // UNSUBACK, remaining length 5
                0x00, 0x21,  // packet id 33
                0x00,  // property length 0
                0x00,  // 0x00 Success
                0x11  // 0x11 No subscription existed
            ]),
        GoldenPacket(
            name: "5.0 UNSUBACK with reason string", version: .v5, role: .client,
            packet: .unsuback(
                MQTTUnsubAck(
                    packetID: 2, reasonCodes: [.topicFilterInvalid, .notAuthorized],
                    properties: [.reasonString("no")])),
            bytes: [
                0xB0, 0x0A,  // UNSUBACK, remaining length 10
                0x00, 0x02,  // packet id 2
                0x05,  // property length 5
                0x1F, 0x00, 0x02, 0x6E, 0x6F,  // Reason String "no"
                0x8F,  // 0x8F Topic Filter invalid
                0x87  // 0x87 Not authorized
            ])
    ]

    static let v5Other: [GoldenPacket] = [
        GoldenPacket(
            name: "5.0 PINGREQ", version: .v5, role: .server,
            packet: .pingreq,
            bytes: [
                0xC0, 0x00  // PINGREQ, remaining length 0
            ]),
        GoldenPacket(
            name: "5.0 PINGRESP", version: .v5, role: .client,
            packet: .pingresp,
            bytes: [
                0xD0, 0x00  // PINGRESP, remaining length 0
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT short form from client", version: .v5, role: .server,
            packet: .disconnect(MQTTDisconnect()),
            bytes: [
                0xE0, 0x00  // DISCONNECT, remaining length 0 (Normal disconnection)
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT short form from server", version: .v5, role: .client,
            packet: .disconnect(MQTTDisconnect()),
            bytes: [
                0xE0, 0x00  // DISCONNECT, remaining length 0 (Normal disconnection)
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT with will message, reason code only", version: .v5, role: .server,
            packet: .disconnect(MQTTDisconnect(reasonCode: .disconnectWithWillMessage)),
            bytes: [
                0xE0, 0x01,  // DISCONNECT, remaining length 1
                0x04  // reason code 0x04 Disconnect with Will Message
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT server shutting down, reason code only", version: .v5, role: .client,
            packet: .disconnect(MQTTDisconnect(reasonCode: .serverShuttingDown)),
            bytes: [
                0xE0, 0x01,  // DISCONNECT, remaining length 1
                0x8B  // reason code 0x8B Server shutting down
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT from client with properties", version: .v5, role: .server,
            packet: .disconnect(MQTTDisconnect(properties: [.sessionExpiryInterval(0), .reasonString("bye")])),
            bytes: [
                0xE0, 0x0D,  // DISCONNECT, remaining length 13
                0x00,  // reason code 0x00 Normal disconnection
                0x0B,  // property length 11
                0x11, 0x00, 0x00, 0x00, 0x00,  // Session Expiry Interval 0
                0x1F, 0x00, 0x03, 0x62, 0x79, 0x65  // Reason String "bye"
            ]),
        GoldenPacket(
            name: "5.0 DISCONNECT from server with server reference", version: .v5, role: .client,
            packet: .disconnect(
                MQTTDisconnect(
                    reasonCode: .useAnotherServer,
                    properties: [.serverReference("b2"), .userProperty("k", "v")])),
            bytes: [
                0xE0, 0x0E,  // DISCONNECT, remaining length 14
                0x9C,  // reason code 0x9C Use another server
                0x0C,  // property length 12
                0x1C, 0x00, 0x02, 0x62, 0x32,  // Server Reference "b2"
                0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76  // User Property "k" = "v"
            ]),
        GoldenPacket(
            name: "5.0 AUTH empty from server", version: .v5, role: .client,
            packet: .auth(MQTTAuth()),
            bytes: [
                0xF0, 0x00  // AUTH, remaining length 0 (Success, no properties)
            ]),
        GoldenPacket(
            name: "5.0 AUTH empty from client", version: .v5, role: .server,
            packet: .auth(MQTTAuth()),
            bytes: [
                0xF0, 0x00  // AUTH, remaining length 0 (Success, no properties)
            ]),
        GoldenPacket(
            name: "5.0 AUTH continue with method and data", version: .v5, role: .server,
            packet: .auth(
                MQTTAuth(
                    reasonCode: .continueAuthentication,
                    properties: [
                        .authenticationMethod("SCRAM-SHA-1"),
                        .authenticationData(ByteBuffer(bytes: [0x01, 0x02, 0x03, 0x04]))
                    ])),
            bytes: [
                0xF0, 0x17,  // AUTH, remaining length 23
                0x18,  // reason code 0x18 Continue authentication
                0x15,  // property length 21
                0x15, 0x00, 0x0B, 0x53, 0x43, 0x52, 0x41, 0x4D, 0x2D, 0x53, 0x48, 0x41, 0x2D, 0x31,  // Authentication Method "SCRAM-SHA-1"
                0x16, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04  // Authentication Data 01 02 03 04
            ]),
        GoldenPacket(
            name: "5.0 AUTH continue from server with reason string", version: .v5, role: .client,
            packet: .auth(
                MQTTAuth(
                    reasonCode: .continueAuthentication,
                    properties: [
                        .authenticationMethod("SCRAM-SHA-1"),
                        .authenticationData(ByteBuffer(bytes: [0xAA])),
                        .reasonString("step")
                    ])),
            bytes: [
                0xF0, 0x1B,  // AUTH, remaining length 27
                0x18,  // reason code 0x18 Continue authentication
                0x19,  // property length 25
                0x15, 0x00, 0x0B, 0x53, 0x43, 0x52, 0x41, 0x4D, 0x2D, 0x53, 0x48, 0x41, 0x2D, 0x31,  // Authentication Method "SCRAM-SHA-1"
                0x16, 0x00, 0x01, 0xAA,  // Authentication Data AA
                0x1F, 0x00, 0x04, 0x73, 0x74, 0x65, 0x70  // Reason String "step"
            ]),
        GoldenPacket(
            name: "5.0 AUTH re-authenticate", version: .v5, role: .server,
            packet: .auth(MQTTAuth(reasonCode: .reAuthenticate, properties: [.authenticationMethod("PLAIN")])),
            bytes: [
                0xF0, 0x0A,  // AUTH, remaining length 10
                0x19,  // reason code 0x19 Re-authenticate
                0x08,  // property length 8
                0x15, 0x00, 0x05, 0x50, 0x4C, 0x41, 0x49, 0x4E  // Authentication Method "PLAIN"
            ])
    ]
}

private func bytes(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

private func filter(_ raw: String) -> MQTTTopicFilter {
    do {
        return try MQTTTopicFilter(raw)
    } catch {
        fatalError("golden topic filter \"\(raw)\" is invalid: \(error)")
    }
}
