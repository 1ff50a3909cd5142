import NIOCore

extension MQTTPacket {
    /// Decodes one framed packet. This is the one dispatch point that maps the first byte to a
    /// packet and checks what the fixed header alone decides.
    ///
    /// - Parameters:
    ///   - version: the version negotiated by CONNECT (ignored for CONNECT itself).
    ///   - role: `.server` to decode what clients send, `.client` for the reverse.
    public static func decode(_ frame: MQTTFrame, version: MQTTProtocolVersion, role: MQTTRole) throws(MQTTCodecError) -> MQTTPacket {
        var body = frame.body
        let rawType = frame.typeAndFlags >> 4
        let flags = frame.typeAndFlags & 0x0F
        guard let type = MQTTPacketType(rawValue: rawType), type != .auth || version.hasProperties else {
            // Type 0 is reserved, and so is 15 before 5.0 [MQTT-2.1.2].
            throw .malformed("packet type \(rawType) is reserved", spec: "MQTT-2.1.2")
        }
        // MQTT 3.1 sent PUBREL, SUBSCRIBE and UNSUBSCRIBE as QoS 1 packets that may carry DUP
        // on a retry; 3.1.1 and 5.0 fix the flags at 0010.
        let dupTolerated = version == .v3_1 && type.requiredFlags == 0b0010 && flags == 0b1010
        if let required = type.requiredFlags, flags != required, !dupTolerated {
            throw .malformed(
                "\(type) has fixed header flags 0x\(String(flags, radix: 16)); they must be 0x\(String(required, radix: 16))",
                spec: "MQTT-2.1.3-1")
        }
        guard type.isReceivable(by: role) else {
            throw .protocolError("\(type) may not be sent by a \(role == .server ? "client" : "server")")
        }
        switch type {
        case .connect:
            return .connect(try MQTTConnect.decode(flags: flags, body: &body, version: version, role: role))
        case .connack:
            return .connack(try MQTTConnAck.decode(flags: flags, body: &body, version: version, role: role))
        case .publish:
            return .publish(try MQTTPublish.decode(flags: flags, body: &body, version: version, role: role))
        case .puback:
            return .puback(try MQTTAck.decode(type: type, body: &body, version: version))
        case .pubrec:
            return .pubrec(try MQTTAck.decode(type: type, body: &body, version: version))
        case .pubrel:
            return .pubrel(try MQTTAck.decode(type: type, body: &body, version: version))
        case .pubcomp:
            return .pubcomp(try MQTTAck.decode(type: type, body: &body, version: version))
        case .subscribe:
            return .subscribe(try MQTTSubscribe.decode(flags: flags, body: &body, version: version, role: role))
        case .suback:
            return .suback(try MQTTSubAck.decode(flags: flags, body: &body, version: version, role: role))
        case .unsubscribe:
            return .unsubscribe(try MQTTUnsubscribe.decode(flags: flags, body: &body, version: version, role: role))
        case .unsuback:
            return .unsuback(try MQTTUnsubAck.decode(flags: flags, body: &body, version: version, role: role))
        case .pingreq, .pingresp:
            guard body.readableBytes == 0 else {
                throw .malformed("\(type) has a remaining length of \(body.readableBytes); it must be 0")
            }
            return type == .pingreq ? .pingreq : .pingresp
        case .disconnect:
            return .disconnect(try MQTTDisconnect.decode(flags: flags, body: &body, version: version, role: role))
        case .auth:
            return .auth(try MQTTAuth.decode(flags: flags, body: &body, version: version, role: role))
        }
    }
}
