import MQTTCodec
import NIOCore
import NIOTestUtils
import StarlingTesting
import Testing

// MARK: - Golden packets

/// Every hand-written packet in `GoldenPackets.all` must decode to its packet value, and that
/// value must encode back to exactly the same bytes.
@Suite("Golden packets")
struct GoldenPacketTests {
    @Test("Decoding the golden bytes gives the golden packet", arguments: GoldenPackets.all)
    func decodesToGoldenPacket(_ golden: GoldenPacket) throws {
        var buffer = ByteBuffer(bytes: golden.bytes)
        let read = try MQTTFrame.read(from: &buffer, maximumPacketSize: 1 << 20)
        let frame = try #require(read, "the golden bytes must hold a whole frame")
        #expect(buffer.readableBytes == 0, "the frame must span all of the golden bytes")
        #expect(frame.typeAndFlags == golden.bytes[0])
        let packet = try MQTTPacket.decode(frame, version: golden.version, role: golden.role)
        #expect(packet == golden.packet)
    }

    @Test("MQTTPacketDecoder decodes the golden bytes, whole and one byte at a time", arguments: GoldenPackets.all)
    func packetDecoderDecodesGoldenBytes(_ golden: GoldenPacket) throws {
        // Whole.
        var decoder = MQTTPacketDecoder(role: golden.role, version: golden.version)
        var buffer = ByteBuffer(bytes: golden.bytes)
        let packet = try decoder.next(from: &buffer)
        #expect(packet == golden.packet)
        #expect(buffer.readableBytes == 0)
        let next = try decoder.next(from: &buffer)
        #expect(next == nil)

        // One byte at a time: nothing until the last byte, then the packet.
        var dripDecoder = MQTTPacketDecoder(role: golden.role, version: golden.version)
        var drip = ByteBuffer()
        for (index, byte) in golden.bytes.enumerated() {
            drip.writeInteger(byte)
            let packet = try dripDecoder.next(from: &drip)
            if index < golden.bytes.count - 1 {
                #expect(packet == nil, "decoded a packet after only \(index + 1) of \(golden.bytes.count) bytes")
            } else {
                #expect(packet == golden.packet)
            }
        }
        #expect(drip.readableBytes == 0)
    }

    @Test("Encoding the golden packet gives the golden bytes", arguments: GoldenPackets.all)
    func encodesToGoldenBytes(_ golden: GoldenPacket) {
        let encoded = Array(golden.packet.encoded(version: golden.version).readableBytesView)
        #expect(encoded == golden.bytes, "encoded \(hex(encoded))\n expected \(hex(golden.bytes))")
    }

    @Test("encodedSize(version:) is the golden byte count", arguments: GoldenPackets.all)
    func encodedSizeMatches(_ golden: GoldenPacket) {
        #expect(golden.packet.encodedSize(version: golden.version) == golden.bytes.count)
        var buffer = ByteBuffer()
        golden.packet.encode(into: &buffer, version: golden.version)
        #expect(buffer.readableBytes == golden.bytes.count)
    }

    @Test("Each version's golden packets decode as one stream", arguments: MQTTProtocolVersion.allCases, [MQTTRole.server, .client])
    func goldenStream(version: MQTTProtocolVersion, role: MQTTRole) throws {
        let goldens = GoldenPackets.all.filter { $0.version == version && $0.role == role }
        #expect(!goldens.isEmpty)
        var wire = ByteBuffer()
        for golden in goldens { wire.writeBytes(golden.bytes) }
        let expected = goldens.map(\.packet)
        // A server learns the version from the CONNECT that starts the stream.
        if role == .server { #expect(expected.first?.type == .connect) }
        let initialVersion: MQTTProtocolVersion? = role == .server ? nil : version

        #expect(try decodeOneByteAtATime(wire, role: role, version: initialVersion) == expected)
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: [(wire, expected)]) {
            MQTTPacketDecoder(role: role, version: initialVersion)
        }
    }

    @Test("The golden table covers every packet type of every version")
    func coversEveryPacketType() {
        for version in MQTTProtocolVersion.allCases {
            let types = Set(GoldenPackets.all.filter { $0.version == version }.map(\.packet.type))
            let expected = Set(MQTTPacketType.allCases.filter { $0 != .auth || version == .v5 })
            #expect(types == expected, "version \(version)")
        }
        // 5.0 acknowledgements appear in the short, reason-code-only and with-properties forms.
        for type in [MQTTPacketType.puback, .pubrec, .pubrel, .pubcomp] {
            let sizes = Set(GoldenPackets.v5.filter { $0.packet.type == type }.map { $0.bytes[1] })
            #expect(sizes.contains(2) && sizes.contains(3) && sizes.contains(where: { $0 > 3 }), "\(type)")
        }
    }

    @Test("Golden packets are well formed")
    func tableIsConsistent() {
        let names = GoldenPackets.all.map(\.name)
        #expect(Set(names).count == names.count, "golden packet names must be unique")
        for golden in GoldenPackets.all {
            #expect(golden.bytes[0] >> 4 == golden.packet.type.rawValue, "\(golden.name): first byte")
            #expect(golden.name.hasPrefix("\(golden.version) "), "\(golden.name): name starts with the version")
            if case .connect(let connect) = golden.packet {
                #expect(connect.version == golden.version, "\(golden.name): CONNECT version")
            }
        }
    }
}

// MARK: - Randomized round trip

/// Thousands of random valid packets of every type for every version and both directions:
/// encode, decode, compare; then the whole stream again through `MQTTPacketDecoder`, one
/// byte at a time. Seeded, so every run generates the same packets.
@Suite("Randomized round trip")
struct RandomizedRoundTripTests {
    /// Packets of each type per version and role.
    static let packetsPerType = 250

    @Test("SplitMix64 is reproducible")
    func splitMixIsReproducible() {
        // Reference outputs of SplitMix64 (Steele, Lea, Flood 2014) for seed 0.
        var rng = SplitMix64(seed: 0)
        #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
        #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
        var a = SplitMix64(seed: 42)
        var b = SplitMix64(seed: 42)
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
    }

    @Test("Random packets round-trip", arguments: MQTTProtocolVersion.allCases, [MQTTRole.server, .client])
    func randomPacketsRoundTrip(version: MQTTProtocolVersion, role: MQTTRole) throws {
        let seed = 0x57A2_11E6 &+ UInt64(version.rawValue) << 8 &+ (role == .server ? 0 : 1)
        var generator = RandomPacketGenerator(seed: seed, version: version)
        let types = RandomPacketGenerator.packetTypes(sentTo: role, version: version)

        var packets: [MQTTPacket] = []
        for _ in 0..<Self.packetsPerType {
            for type in types { packets.append(generator.packet(type, decodedBy: role)) }
        }
        generator.shuffle(&packets)
        if role == .server {
            // A server's stream starts with CONNECT [MQTT-3.1.0-1].
            packets.insert(.connect(generator.connect()), at: 0)
        }

        var wire = ByteBuffer()
        var failures = 0
        for packet in packets where failures < 10 {
            let encoded = packet.encoded(version: version)
            #expect(encoded.readableBytes == packet.encodedSize(version: version), "\(packet)")
            var input = encoded
            do {
                guard let frame = try MQTTFrame.read(from: &input, maximumPacketSize: 1 << 28) else {
                    Issue.record("no frame from the encoding of \(packet)")
                    failures += 1
                    continue
                }
                #expect(input.readableBytes == 0)
                let decoded = try MQTTPacket.decode(frame, version: version, role: role)
                if decoded != packet {
                    #expect(decoded == packet)
                    failures += 1
                }
            } catch {
                Issue.record("decoding \(packet) failed: \(error); bytes \(hex(Array(encoded.readableBytesView)))")
                failures += 1
            }
            wire.writeImmutableBuffer(encoded)
        }
        try #require(failures == 0)

        let streamed = try decodeOneByteAtATime(wire, role: role, version: role == .server ? nil : version)
        #expect(streamed.count == packets.count)
        if let index = zip(streamed, packets).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("packet \(index) of the byte-at-a-time stream differs: \(streamed[index]) != \(packets[index])")
        }
    }

    @Test("The generator produces every packet type", arguments: MQTTProtocolVersion.allCases)
    func generatorCoversEveryType(version: MQTTProtocolVersion) {
        let server = RandomPacketGenerator.packetTypes(sentTo: .server, version: version)
        let client = RandomPacketGenerator.packetTypes(sentTo: .client, version: version)
        let expected = Set(MQTTPacketType.allCases.filter { $0 != .auth || version == .v5 })
        #expect(Set(server).union(client) == expected)
    }
}

// MARK: - Helpers

/// Feeds `wire` to an `MQTTPacketDecoder` one byte at a time.
private func decodeOneByteAtATime(_ wire: ByteBuffer, role: MQTTRole, version: MQTTProtocolVersion?) throws(MQTTCodecError) -> [MQTTPacket]
{
    var decoder = MQTTPacketDecoder(role: role, version: version)
    var buffer = ByteBuffer()
    var packets: [MQTTPacket] = []
    for byte in wire.readableBytesView {
        buffer.writeInteger(byte)
        while let packet = try decoder.next(from: &buffer) {
            packets.append(packet)
            // The packet holds slices of `buffer`'s storage: start a new buffer so that the next
            // write does not copy everything read so far.
            var fresh = ByteBuffer()
            fresh.writeImmutableBuffer(buffer)
            buffer = fresh
        }
    }
    #expect(buffer.readableBytes == 0, "bytes left over after the last packet")
    return packets
}

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let digits = String(byte, radix: 16, uppercase: true)
        return digits.count == 1 ? "0" + digits : digits
    }.joined(separator: " ")
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast generator whose sequence depends
/// only on its seed, so randomized tests are reproducible.

/// Generates random packets that are valid for one protocol version and direction.
private struct RandomPacketGenerator {
    var rng: SplitMix64
    let version: MQTTProtocolVersion

    init(seed: UInt64, version: MQTTProtocolVersion) {
        rng = SplitMix64(seed: seed)
        self.version = version
    }

    /// The packet types a decoder in `role` receives in `version`. In 3.x only the client sends
    /// DISCONNECT, and AUTH does not exist.
    static func packetTypes(sentTo role: MQTTRole, version: MQTTProtocolVersion) -> [MQTTPacketType] {
        MQTTPacketType.allCases.filter { type in
            switch type {
            case .connect, .subscribe, .unsubscribe, .pingreq: role == .server
            case .connack, .suback, .unsuback, .pingresp: role == .client
            case .disconnect: role == .server || version == .v5
            case .auth: version == .v5
            case .publish, .puback, .pubrec, .pubrel, .pubcomp: true
            }
        }
    }

    mutating func packet(_ type: MQTTPacketType, decodedBy role: MQTTRole) -> MQTTPacket {
        switch type {
        case .connect: .connect(connect())
        case .connack: .connack(connack())
        case .publish: .publish(publish(decodedBy: role))
        case .puback: .puback(ack(.puback, decodedBy: role))
        case .pubrec: .pubrec(ack(.pubrec, decodedBy: role))
        case .pubrel: .pubrel(ack(.pubrel, decodedBy: role))
        case .pubcomp: .pubcomp(ack(.pubcomp, decodedBy: role))
        case .subscribe: .subscribe(subscribe())
        case .suback: .suback(suback())
        case .unsubscribe: .unsubscribe(unsubscribe())
        case .unsuback: .unsuback(unsuback())
        case .pingreq: .pingreq
        case .pingresp: .pingresp
        case .disconnect: .disconnect(disconnect(decodedBy: role))
        case .auth: .auth(auth(decodedBy: role))
        }
    }

    // MARK: Packets

    mutating func connect() -> MQTTConnect {
        let cleanStart = bool()
        let clientID: String
        switch version {
        case .v3_1:
            // 3.1: 1 to 23 characters.
            clientID = asciiString(1...23)
        case .v3_1_1:
            // An empty client id needs Clean Session 1 [MQTT-3.1.3-7, -8].
            clientID = cleanStart && bool(0.2) ? "" : string(1...23)
        case .v5:
            clientID = bool(0.2) ? "" : string(1...23)
        }
        let username: String? = bool() ? string(0...12) : nil
        var password: ByteBuffer? = bool() ? binary(0...16) : nil
        if version < .v5 && username == nil {
            // 3.x: no password without a user name [MQTT-3.1.2-22].
            password = nil
        }
        var will: MQTTWill?
        if bool() {
            let properties = properties(.will)
            will = MQTTWill(
                topic: topicName(), payload: payload(utf8: properties.payloadFormatIndicator == 1),
                qos: qos(), retain: bool(), properties: properties)
        }
        return MQTTConnect(
            version: version, clientID: clientID, cleanStart: cleanStart, keepAlive: uint16(),
            username: username, password: password, will: will, properties: properties(.connect))
    }

    mutating func connack() -> MQTTConnAck {
        switch version {
        case .v3_1:
            // No Session Present flag in 3.1.
            return MQTTConnAck(sessionPresent: false, reasonCode: pick(MQTTConnectReturnCode.allCases).reasonCode)
        case .v3_1_1:
            let code = pick(MQTTConnectReturnCode.allCases).reasonCode
            return MQTTConnAck(sessionPresent: code == .success && bool(), reasonCode: code)
        case .v5:
            let code = bool(0.4) ? MQTTReasonCode.success : MQTTReasonCode(pick(MQTTReasonCode.allowed(in: .connack).sorted()))
            // Session Present is 0 with a failure reason code [MQTT-3.2.2-6].
            return MQTTConnAck(sessionPresent: code == .success && bool(), reasonCode: code, properties: properties(.connack))
        }
    }

    mutating func publish(decodedBy role: MQTTRole) -> MQTTPublish {
        let qos = qos()
        // Only a server sends Subscription Identifiers in PUBLISH [MQTT-3.3.4-6].
        let properties = properties(.publish, excluding: role == .server ? [.subscriptionIdentifier] : [])
        // With a Topic Alias the Topic Name may be empty [MQTT-3.3.2.3.4].
        let topic = properties.topicAlias != nil && bool() ? "" : topicName()
        return MQTTPublish(
            topic: topic,
            payload: payload(utf8: properties.payloadFormatIndicator == 1),
            qos: qos,
            retain: bool(),
            dup: qos != .atMostOnce && bool(0.3),  // DUP is 0 at QoS 0 [MQTT-3.3.1-2]
            packetID: qos == .atMostOnce ? nil : packetID(),
            properties: properties)
    }

    mutating func ack(_ type: MQTTPacketType, decodedBy role: MQTTRole) -> MQTTAck {
        guard version == .v5 else { return MQTTAck(packetID: packetID()) }
        var codes = MQTTReasonCode.allowed(in: type).sorted()
        if role == .server {
            // 0x10 No matching subscribers is sent only by the Server.
            codes.removeAll { $0 == 0x10 }
        }
        let code = bool(0.4) ? MQTTReasonCode.success : MQTTReasonCode(pick(codes))
        return MQTTAck(
            packetID: packetID(), reasonCode: code,
            properties: bool(0.5) ? properties(MQTTProperty.Context(type)) : [])
    }

    mutating func subscribe() -> MQTTSubscribe {
        var subscriptions: [MQTTSubscription] = []
        for _ in 0..<int(1...5) {
            let shared = version == .v5 && bool(0.15)
            let filter = shared ? sharedFilter() : topicFilter()
            if version == .v5 {
                subscriptions.append(
                    MQTTSubscription(
                        filter: filter, qos: qos(),
                        noLocal: !shared && bool(),  // No Local is not allowed on a shared subscription [MQTT-3.8.3-4]
                        retainAsPublished: bool(),
                        retainHandling: pick([.sendOnSubscribe, .sendIfNew, .doNotSend])))
            } else {
                subscriptions.append(MQTTSubscription(filter: filter, qos: qos()))
            }
        }
        // At most one Subscription Identifier in SUBSCRIBE: it is not repeatable there.
        return MQTTSubscribe(packetID: packetID(), subscriptions: subscriptions, properties: properties(.subscribe))
    }

    mutating func suback() -> MQTTSubAck {
        let codes: [UInt8] =
            switch version {
            case .v3_1: [0x00, 0x01, 0x02]  // granted QoS only
            case .v3_1_1: [0x00, 0x01, 0x02, 0x80]  // [MQTT-3.9.3-2]
            case .v5: MQTTReasonCode.allowed(in: .suback).sorted()
            }
        var reasonCodes: [MQTTReasonCode] = []
        for _ in 0..<int(1...5) { reasonCodes.append(MQTTReasonCode(pick(codes))) }
        return MQTTSubAck(packetID: packetID(), reasonCodes: reasonCodes, properties: properties(.suback))
    }

    mutating func unsubscribe() -> MQTTUnsubscribe {
        var filters: [MQTTTopicFilter] = []
        for _ in 0..<int(1...5) {
            filters.append(version == .v5 && bool(0.15) ? sharedFilter() : topicFilter())
        }
        return MQTTUnsubscribe(packetID: packetID(), filters: filters, properties: properties(.unsubscribe))
    }

    mutating func unsuback() -> MQTTUnsubAck {
        // 3.x UNSUBACK carries only the packet id.
        guard version == .v5 else { return MQTTUnsubAck(packetID: packetID()) }
        let codes = MQTTReasonCode.allowed(in: .unsuback).sorted()
        var reasonCodes: [MQTTReasonCode] = []
        for _ in 0..<int(1...5) { reasonCodes.append(MQTTReasonCode(pick(codes))) }
        return MQTTUnsubAck(packetID: packetID(), reasonCodes: reasonCodes, properties: properties(.unsuback))
    }

    /// DISCONNECT reason codes only a Server sends (MQTT 5.0 Table 3-10).
    static let serverOnlyDisconnectCodes: Set<UInt8> = [
        0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2
    ]

    mutating func disconnect(decodedBy role: MQTTRole) -> MQTTDisconnect {
        guard version == .v5 else { return MQTTDisconnect() }
        var codes = MQTTReasonCode.allowed(in: .disconnect).sorted()
        let excluded: Set<MQTTProperty.Identifier>
        if role == .server {
            // From a client: no server-only codes, no Server Reference.
            codes.removeAll { Self.serverOnlyDisconnectCodes.contains($0) }
            excluded = [.serverReference]
        } else {
            // From a server: no 0x04, no Session Expiry Interval [MQTT-3.14.2-2].
            codes.removeAll { $0 == 0x04 }
            excluded = [.sessionExpiryInterval]
        }
        let code = bool(0.4) ? MQTTReasonCode.normalDisconnection : MQTTReasonCode(pick(codes))
        return MQTTDisconnect(reasonCode: code, properties: bool(0.5) ? properties(.disconnect, excluding: excluded) : [])
    }

    mutating func auth(decodedBy role: MQTTRole) -> MQTTAuth {
        // A client continues or re-authenticates; a server continues or reports success.
        let code = MQTTReasonCode(pick(role == .server ? [0x18, 0x19] : [0x00, 0x18]))
        if code == .success && bool(0.3) { return MQTTAuth() }
        // Any other AUTH carries the Authentication Method [MQTT-3.15.2.2.2].
        var properties = properties(.auth)
        properties.removeAll(.authenticationMethod)
        properties.storage.insert(.authenticationMethod(string(1...10)), at: int(0...properties.count))
        return MQTTAuth(reasonCode: code, properties: properties)
    }

    // MARK: Properties

    mutating func properties(_ context: MQTTProperty.Context, excluding excluded: Set<MQTTProperty.Identifier> = []) -> MQTTProperties {
        guard version == .v5 else { return [] }
        var candidates = MQTTProperty.Identifier.allCases.filter {
            $0.spec.allowedIn.isSuperset(of: context) && !excluded.contains($0)
        }
        shuffle(&candidates)
        var storage: [MQTTProperty] = []
        for id in candidates.prefix(int(0...min(6, candidates.count))) {
            let repeats = id.spec.repeatableIn.isSuperset(of: context) ? int(1...3) : 1
            for _ in 0..<repeats { storage.append(property(id)) }
        }
        // Authentication Data needs an Authentication Method [MQTT-3.1.2-... 3.1.2.11.10].
        let hasMethod = storage.contains { $0.identifier == .authenticationMethod }
        if storage.contains(where: { $0.identifier == .authenticationData }) && !hasMethod {
            storage.append(.authenticationMethod(string(1...10)))
        }
        shuffle(&storage)
        return MQTTProperties(storage)
    }

    mutating func property(_ id: MQTTProperty.Identifier) -> MQTTProperty {
        switch id {
        case .payloadFormatIndicator: .payloadFormatIndicator(bit())
        case .messageExpiryInterval: .messageExpiryInterval(uint32())
        case .contentType: .contentType(string(0...12))
        case .responseTopic: .responseTopic(topicName())
        case .correlationData: .correlationData(binary(0...16))
        case .subscriptionIdentifier: .subscriptionIdentifier(variableByteInteger(minimum: 1))
        case .sessionExpiryInterval: .sessionExpiryInterval(uint32())
        case .assignedClientIdentifier: .assignedClientIdentifier(string(1...23))
        case .serverKeepAlive: .serverKeepAlive(uint16())
        case .authenticationMethod: .authenticationMethod(string(1...10))
        case .authenticationData: .authenticationData(binary(0...16))
        case .requestProblemInformation: .requestProblemInformation(bit())
        case .willDelayInterval: .willDelayInterval(uint32())
        case .requestResponseInformation: .requestResponseInformation(bit())
        case .responseInformation: .responseInformation(string(0...12))
        case .serverReference: .serverReference(string(1...12))
        case .reasonString: .reasonString(string(0...16))
        case .receiveMaximum: .receiveMaximum(max(1, uint16()))
        case .topicAliasMaximum: .topicAliasMaximum(uint16())
        case .topicAlias: .topicAlias(max(1, uint16()))
        case .maximumQoS: .maximumQoS(bit())
        case .retainAvailable: .retainAvailable(bit())
        case .userProperty: .userProperty(string(0...8), string(0...12))
        case .maximumPacketSize: .maximumPacketSize(max(1, uint32()))
        case .wildcardSubscriptionAvailable: .wildcardSubscriptionAvailable(bit())
        case .subscriptionIdentifierAvailable: .subscriptionIdentifierAvailable(bit())
        case .sharedSubscriptionAvailable: .sharedSubscriptionAvailable(bit())
        }
    }

    // MARK: Topics

    /// Characters of topic levels, client ids and strings: ASCII, two-, three- and four-byte
    /// UTF-8, and no wildcard, separator or U+0000.
    static let characters: [String] = [
        "a", "b", "c", "x", "y", "z", "0", "7", "-", "_", ".", " ", "$",
        "é", "ß", "Ж", "中", "文", "€", "🙂", "𝄞"
    ]
    static let asciiCharacters: [String] = ["a", "b", "c", "m", "x", "Z", "0", "1", "9"]

    /// A valid Topic Name: at least one character, no wildcards; empty levels are allowed.
    mutating func topicName() -> String {
        var levels: [String] = []
        for _ in 0..<int(1...4) { levels.append(string(0...5)) }
        let name = levels.joined(separator: "/")
        return name.isEmpty ? "t" : name
    }

    /// A valid Topic Filter: `+` as whole levels, `#` alone as the last level.
    mutating func topicFilter() -> MQTTTopicFilter {
        var levels: [String] = []
        for _ in 0..<int(1...4) { levels.append(bool(0.2) ? "+" : string(0...5)) }
        if bool(0.15) { levels[levels.count - 1] = "#" }
        var raw = levels.joined(separator: "/")
        if raw.isEmpty { raw = "f" }
        return makeFilter(raw)
    }

    /// `$share/{ShareName}/{filter}` (5.0).
    mutating func sharedFilter() -> MQTTTopicFilter {
        let shareName = string(1...5)
        return makeFilter("$share/\(shareName)/\(topicFilter().raw)")
    }

    private func makeFilter(_ raw: String) -> MQTTTopicFilter {
        do {
            return try MQTTTopicFilter(raw)
        } catch {
            fatalError("generated an invalid topic filter \"\(raw)\": \(error)")
        }
    }

    // MARK: Values

    mutating func bool(_ probability: Double = 0.5) -> Bool {
        Double.random(in: 0..<1, using: &rng) < probability
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

    mutating func pick<T>(_ elements: [T]) -> T { elements[int(0...elements.count - 1)] }

    mutating func shuffle<T>(_ elements: inout [T]) { elements.shuffle(using: &rng) }

    mutating func bit() -> UInt8 { UInt8(int(0...1)) }

    mutating func qos() -> MQTTQoS { pick(MQTTQoS.allCases) }

    mutating func packetID() -> UInt16 { bool(0.1) ? pick([1, 0x7FFF, 0x8000, 0xFFFF]) : UInt16(int(1...0xFFFF)) }

    mutating func uint16() -> UInt16 { bool(0.2) ? pick([0, 1, 0xFF, 0x100, 0xFFFF]) : UInt16.random(in: .min ... .max, using: &rng) }

    mutating func uint32() -> UInt32 {
        bool(0.2) ? pick([0, 1, 0xFFFF, 0x10000, 0xFFFF_FFFF]) : UInt32.random(in: .min ... .max, using: &rng)
    }

    /// Favors the boundaries between one-, two-, three- and four-byte encodings.
    mutating func variableByteInteger(minimum: Int) -> Int {
        let boundaries = [1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455]
        return bool(0.4) ? max(minimum, pick(boundaries)) : int(minimum...ByteBuffer.maxVariableByteInteger)
    }

    mutating func string(_ length: ClosedRange<Int>) -> String {
        var result = ""
        for _ in 0..<int(length) { result += pick(Self.characters) }
        return result
    }

    mutating func asciiString(_ length: ClosedRange<Int>) -> String {
        var result = ""
        for _ in 0..<int(length) { result += pick(Self.asciiCharacters) }
        return result
    }

    mutating func binary(_ length: ClosedRange<Int>) -> ByteBuffer {
        var buffer = ByteBuffer()
        for _ in 0..<int(length) { buffer.writeInteger(UInt8.random(in: .min ... .max, using: &rng)) }
        return buffer
    }

    /// Mostly small payloads, some needing a two-byte and a few a three-byte Remaining Length.
    /// With Payload Format Indicator 1 the payload is UTF-8.
    mutating func payload(utf8: Bool) -> ByteBuffer {
        let roll = int(0...99)
        let length = roll < 90 ? int(0...32) : roll < 99 ? int(33...400) : int(16_384...20_000)
        if utf8 { return ByteBuffer(string: string(0...length)) }
        return binary(length...length)
    }
}
