import MQTTCodec
public import NIOCore

/// The byte form of a batch of store operations in the spool (the SQLite journal a node writes
/// while PostgreSQL is unreachable): a version byte, then each operation as a tag and its
/// fields. Lengths are 32-bit (payloads may exceed MQTT's 16-bit strings); properties are kept
/// as on the wire, so the codec's own validation reads them back.
public enum SpoolCoding {
    static let version: UInt8 = 1

    /// The byte before each operation: which `StoreOperation` follows. Spools outlive upgrades,
    /// so a tag keeps its number for ever; a new operation takes the next one.
    enum Tag: UInt8 {
        case saveSession = 1
        case deleteSession = 2
        case saveSubscription = 3
        case deleteSubscription = 4
        case saveMessage = 5
        case saveDelivery = 6
        case updateDelivery = 7
        case deleteDelivery = 8
        case addInboundQoS2 = 9
        case removeInboundQoS2 = 10
        case setRetained = 11
        case ingest = 12
        case saveConnectionWill = 13
        case deleteConnectionWill = 14
        case markReplayed = 15
        case fenced = 16

        /// The tag of `operation`.
        init(_ operation: StoreOperation) {
            self =
                switch operation {
                case .saveSession: .saveSession
                case .deleteSession: .deleteSession
                case .saveSubscription: .saveSubscription
                case .deleteSubscription: .deleteSubscription
                case .saveMessage: .saveMessage
                case .saveDelivery: .saveDelivery
                case .updateDelivery: .updateDelivery
                case .deleteDelivery: .deleteDelivery
                case .addInboundQoS2: .addInboundQoS2
                case .removeInboundQoS2: .removeInboundQoS2
                case .setRetained: .setRetained
                case .ingest: .ingest
                case .saveConnectionWill: .saveConnectionWill
                case .deleteConnectionWill: .deleteConnectionWill
                case .markReplayed: .markReplayed
                case .fenced: .fenced
                }
        }
    }

    public struct Malformed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Fences are kept with the time they were spooled (`SessionFence.spooledAt`).
    public static func encode(_ operations: [StoreOperation]) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeInteger(version)
        out.writeInteger(UInt32(operations.count))
        for operation in operations { write(operation, to: &out) }
        return out
    }

    public static func decode(_ bytes: ByteBuffer) throws -> [StoreOperation] {
        var input = bytes
        guard try input.spoolInteger(as: UInt8.self) == version else { throw Malformed(description: "unknown spool format") }
        let count = Int(try input.spoolInteger(as: UInt32.self))
        var operations: [StoreOperation] = []
        operations.reserveCapacity(count)
        for _ in 0..<count { operations.append(try read(from: &input)) }
        return operations
    }

    private static func write(_ operation: StoreOperation, to out: inout ByteBuffer) {
        out.writeInteger(Tag(operation).rawValue)
        switch operation {
        case .saveSession(let session):
            writeSession(session, to: &out)
        case .deleteSession(let clientID):
            out.writeSpoolString(clientID)
        case .saveSubscription(let stored):
            writeSubscription(stored, to: &out)
        case .deleteSubscription(let clientID, let filter):
            out.writeSpoolString(clientID)
            out.writeSpoolString(filter)
        case .saveMessage(let message):
            writeMessage(message, to: &out)
        case .saveDelivery(let delivery):
            writeDelivery(delivery, to: &out)
        case .updateDelivery(let clientID, let sequence, let state, let packetID):
            out.writeSpoolString(clientID)
            out.writeInteger(sequence)
            out.writeInteger(UInt8(state.rawValue))
            out.writeSpoolOptional(packetID.map(Int64.init))
        case .deleteDelivery(let clientID, let sequence):
            out.writeSpoolString(clientID)
            out.writeInteger(sequence)
        case .addInboundQoS2(let clientID, let packetID), .removeInboundQoS2(let clientID, let packetID):
            out.writeSpoolString(clientID)
            out.writeInteger(packetID)
        case .setRetained(let message):
            writeMessage(message, to: &out)
        case .ingest(let record):
            writeIngest(record, to: &out)
        case .saveConnectionWill(let will):
            out.writeSpoolString(will.clientID)
            out.writeInteger(will.token)
            writeWill(will.will, to: &out)
        case .deleteConnectionWill(let token):
            out.writeInteger(token)
        case .markReplayed(let spool, let through):
            out.writeSpoolString(spool)
            out.writeInteger(through)
        case .fenced(let fence, let guarded):
            out.writeSpoolString(fence.clientID)
            out.writeInteger(fence.epoch)
            out.writeSpoolOptional(fence.spooledAt)
            out.writeInteger(UInt32(guarded.count))
            for operation in guarded { write(operation, to: &out) }
        }
    }

    private static func read(from input: inout ByteBuffer) throws -> StoreOperation {
        let byte = try input.spoolInteger(as: UInt8.self)
        guard let tag = Tag(rawValue: byte) else { throw Malformed(description: "unknown operation \(byte)") }
        switch tag {
        case .saveSession:
            return try readSession(from: &input)
        case .deleteSession:
            return .deleteSession(clientID: try input.spoolString())
        case .saveSubscription:
            return try readSubscription(from: &input)
        case .deleteSubscription:
            return .deleteSubscription(clientID: try input.spoolString(), filter: try input.spoolString())
        case .saveMessage:
            return .saveMessage(try readMessage(from: &input))
        case .saveDelivery:
            return try readDelivery(from: &input)
        case .updateDelivery:
            let clientID = try input.spoolString()
            let sequence = try input.spoolInteger(as: Int64.self)
            let state = try state(try input.spoolInteger(as: UInt8.self))
            let packetID: Int64? = try input.spoolOptional()
            return .updateDelivery(
                clientID: clientID, sequence: sequence, state: state, packetID: packetID.map { UInt16(truncatingIfNeeded: $0) })
        case .deleteDelivery:
            return .deleteDelivery(clientID: try input.spoolString(), sequence: try input.spoolInteger(as: Int64.self))
        case .addInboundQoS2:
            return .addInboundQoS2(clientID: try input.spoolString(), packetID: try input.spoolInteger(as: UInt16.self))
        case .removeInboundQoS2:
            return .removeInboundQoS2(clientID: try input.spoolString(), packetID: try input.spoolInteger(as: UInt16.self))
        case .setRetained:
            return .setRetained(try readMessage(from: &input))
        case .ingest:
            return try readIngest(from: &input)
        case .saveConnectionWill:
            let clientID = try input.spoolString()
            let token = try input.spoolInteger(as: Int64.self)
            return .saveConnectionWill(StoredConnectionWill(clientID: clientID, token: token, will: try readWill(from: &input)))
        case .deleteConnectionWill:
            return .deleteConnectionWill(token: try input.spoolInteger(as: Int64.self))
        case .markReplayed:
            return .markReplayed(spool: try input.spoolString(), through: try input.spoolInteger(as: Int64.self))
        case .fenced:
            let clientID = try input.spoolString()
            let epoch = try input.spoolInteger(as: Int64.self)
            let spooledAt = try input.spoolOptional()
            let count = Int(try input.spoolInteger(as: UInt32.self))
            var guarded: [StoreOperation] = []
            for _ in 0..<count { guarded.append(try read(from: &input)) }
            return .fenced(SessionFence(clientID: clientID, epoch: epoch, spooledAt: spooledAt), guarded)
        }
    }

    private static func writeSession(_ s: StoredSession, to out: inout ByteBuffer) {
        out.writeSpoolString(s.clientID)
        out.writeInteger(s.version.rawValue)
        out.writeInteger(s.expiryInterval)
        out.writeSpoolOptional(s.expiresAt)
        out.writeSpoolBool(s.connected)
        out.writeSpoolOptionalString(s.username)
        out.writeSpoolBool(s.will != nil)
        if let will = s.will { writeWill(will, to: &out) }
        out.writeSpoolOptional(s.willDueAt)
        out.writeInteger(s.epoch)
    }

    private static func writeSubscription(_ stored: StoredSubscription, to out: inout ByteBuffer) {
        out.writeSpoolString(stored.clientID)
        let s = stored.subscription
        out.writeSpoolString(s.filter.raw)
        out.writeInteger(s.qos.rawValue)
        out.writeSpoolBool(s.noLocal)
        out.writeSpoolBool(s.retainAsPublished)
        out.writeInteger(s.retainHandling.rawValue)
        out.writeSpoolOptional(s.identifier.map(Int64.init))
    }

    private static func writeDelivery(_ d: StoredDelivery, to out: inout ByteBuffer) {
        out.writeSpoolString(d.clientID)
        out.writeInteger(d.sequence)
        out.writeInteger(d.messageID)
        out.writeInteger(d.qos.rawValue)
        out.writeSpoolBool(d.retain)
        out.writeSpoolString(StoreCoding.encode(identifiers: d.subscriptionIdentifiers) ?? "")
        out.writeSpoolOptionalString(d.shareGroup?.name)
        out.writeSpoolString(d.shareGroup?.filter ?? "")
        out.writeInteger(UInt8(d.state.rawValue))
        out.writeSpoolOptional(d.packetID.map(Int64.init))
    }

    private static func writeIngest(_ r: IngestRecord, to out: inout ByteBuffer) {
        out.writeInteger(r.receivedAt)
        out.writeSpoolString(r.clientID)
        out.writeSpoolOptionalString(r.username)
        out.writeSpoolOptional(r.packetID.map(Int64.init))
        out.writeSpoolString(r.topic)
        out.writeSpoolBytes(r.payload)
        out.writeInteger(r.qos)
        out.writeSpoolBool(r.retain)
        out.writeSpoolOptionalString(r.contentType)
        out.writeInteger(UInt32(r.userProperties.count))
        for (key, value) in r.userProperties {
            out.writeSpoolString(key)
            out.writeSpoolString(value)
        }
        out.writeSpoolBytes(ByteBuffer(bytes: r.contentHash))
        out.writeSpoolString(r.nodeID)
        switch r.dedup {
        case .none: out.writeInteger(UInt8(0))
        case .qos1(let dup, let contentOnly): out.writeInteger(UInt8(1 | (dup ? 4 : 0) | (contentOnly ? 8 : 0)))
        case .qos2: out.writeInteger(UInt8(2))
        }
    }

    private static func readSession(from input: inout ByteBuffer) throws -> StoreOperation {
        let clientID = try input.spoolString()
        guard let version = MQTTProtocolVersion(rawValue: try input.spoolInteger(as: UInt8.self)) else {
            throw Malformed(description: "protocol version")
        }
        var session = StoredSession(
            clientID: clientID, version: version, expiryInterval: try input.spoolInteger(as: UInt32.self),
            expiresAt: try input.spoolOptional(), connected: try input.spoolBool(),
            username: try input.spoolOptionalString())
        session.will = try input.spoolBool() ? try readWill(from: &input) : nil
        session.willDueAt = try input.spoolOptional()
        session.epoch = try input.spoolInteger(as: Int64.self)
        return .saveSession(session)
    }

    private static func readSubscription(from input: inout ByteBuffer) throws -> StoreOperation {
        let clientID = try input.spoolString()
        let filter = try MQTTTopicFilter(try input.spoolString())
        let qos = try qos(try input.spoolInteger(as: UInt8.self))
        let noLocal = try input.spoolBool()
        let retainAsPublished = try input.spoolBool()
        guard let handling = MQTTSubscription.RetainHandling(rawValue: try input.spoolInteger(as: UInt8.self)) else {
            throw Malformed(description: "retain handling")
        }
        let identifier: Int64? = try input.spoolOptional()
        let subscription = Subscription(
            MQTTSubscription(
                filter: filter, qos: qos, noLocal: noLocal, retainAsPublished: retainAsPublished,
                retainHandling: handling), identifier: identifier.map(Int.init))
        return .saveSubscription(StoredSubscription(clientID: clientID, subscription: subscription))
    }

    private static func readDelivery(from input: inout ByteBuffer) throws -> StoreOperation {
        let clientID = try input.spoolString()
        let sequence = try input.spoolInteger(as: Int64.self)
        let messageID = try input.spoolInteger(as: Int64.self)
        let qos = try qos(try input.spoolInteger(as: UInt8.self))
        let retain = try input.spoolBool()
        let identifiers = StoreCoding.decodeIdentifiers(try input.spoolString())
        let shareName = try input.spoolOptionalString()
        let shareFilter = try input.spoolString()
        let state = try state(try input.spoolInteger(as: UInt8.self))
        let packetID: Int64? = try input.spoolOptional()
        return .saveDelivery(
            StoredDelivery(
                clientID: clientID, sequence: sequence, messageID: messageID, qos: qos, retain: retain,
                subscriptionIdentifiers: identifiers,
                shareGroup: shareName.map { ShareGroupKey(name: $0, filter: shareFilter) },
                state: state, packetID: packetID.map { UInt16(truncatingIfNeeded: $0) }))
    }

    private static func readIngest(from input: inout ByteBuffer) throws -> StoreOperation {
        let receivedAt = try input.spoolInteger(as: Int64.self)
        let clientID = try input.spoolString()
        let username = try input.spoolOptionalString()
        let packetID: Int64? = try input.spoolOptional()
        let topic = try input.spoolString()
        let payload = try input.spoolBytes()
        let qos = try input.spoolInteger(as: UInt8.self)
        let retain = try input.spoolBool()
        let contentType = try input.spoolOptionalString()
        var userProperties: [(String, String)] = []
        for _ in 0..<Int(try input.spoolInteger(as: UInt32.self)) {
            userProperties.append((try input.spoolString(), try input.spoolString()))
        }
        let hash = Array(try input.spoolBytes().readableBytesView)
        let nodeID = try input.spoolString()
        let flags = try input.spoolInteger(as: UInt8.self)
        let dedup: IngestRecord.Dedup =
            switch flags & 3 {
            case 1: .qos1(dup: flags & 4 != 0, contentOnly: flags & 8 != 0)
            case 2: .qos2
            default: .none
            }
        return .ingest(
            IngestRecord(
                receivedAt: receivedAt, clientID: clientID, username: username,
                packetID: packetID.map { UInt16(truncatingIfNeeded: $0) }, topic: topic, payload: payload, qos: qos,
                retain: retain, contentType: contentType, userProperties: userProperties, contentHash: hash,
                nodeID: nodeID, dedup: dedup))
    }

    private static func writeWill(_ will: MQTTWill, to out: inout ByteBuffer) {
        out.writeSpoolString(will.topic)
        out.writeSpoolBytes(will.payload)
        out.writeInteger(will.qos.rawValue)
        out.writeSpoolBool(will.retain)
        out.writeSpoolBytes(ByteBuffer(bytes: StoreCoding.encode(will.properties)))
    }

    private static func readWill(from input: inout ByteBuffer) throws -> MQTTWill {
        let topic = try input.spoolString()
        let payload = try input.spoolBytes()
        let qos = try qos(try input.spoolInteger(as: UInt8.self))
        let retain = try input.spoolBool()
        let properties = try StoreCoding.decodeProperties(Array(try input.spoolBytes().readableBytesView), context: .will)
        return MQTTWill(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
    }

    private static func writeMessage(_ m: StoredMessage, to out: inout ByteBuffer) {
        out.writeInteger(m.id)
        out.writeSpoolString(m.topic)
        out.writeSpoolBytes(m.payload)
        out.writeInteger(m.qos.rawValue)
        out.writeSpoolBool(m.retain)
        out.writeSpoolBytes(ByteBuffer(bytes: StoreCoding.encode(m.properties)))
        out.writeSpoolOptional(m.expiresAt)
        out.writeSpoolString(m.publisher)
    }

    private static func readMessage(from input: inout ByteBuffer) throws -> StoredMessage {
        let id = try input.spoolInteger(as: Int64.self)
        let topic = try input.spoolString()
        let payload = try input.spoolBytes()
        let qos = try qos(try input.spoolInteger(as: UInt8.self))
        let retain = try input.spoolBool()
        let properties = try StoreCoding.decodeProperties(Array(try input.spoolBytes().readableBytesView), context: .publish)
        return StoredMessage(
            id: id, topic: topic, payload: payload, qos: qos, retain: retain, properties: properties,
            expiresAt: try input.spoolOptional(), publisher: try input.spoolString())
    }

    private static func qos(_ raw: UInt8) throws -> MQTTQoS {
        guard let qos = MQTTQoS(rawValue: raw) else { throw Malformed(description: "QoS \(raw)") }
        return qos
    }

    private static func state(_ raw: UInt8) throws -> StoredDeliveryState {
        guard let state = StoredDeliveryState(rawValue: Int(raw)) else { throw Malformed(description: "delivery state \(raw)") }
        return state
    }
}

extension ByteBuffer {
    fileprivate mutating func writeSpoolBool(_ value: Bool) { writeInteger(UInt8(value ? 1 : 0)) }

    fileprivate mutating func writeSpoolBytes(_ bytes: ByteBuffer) {
        writeInteger(UInt32(bytes.readableBytes))
        writeImmutableBuffer(bytes)
    }

    fileprivate mutating func writeSpoolString(_ string: String) {
        writeInteger(UInt32(string.utf8.count))
        writeString(string)
    }

    fileprivate mutating func writeSpoolOptionalString(_ string: String?) {
        writeSpoolBool(string != nil)
        if let string { writeSpoolString(string) }
    }

    fileprivate mutating func writeSpoolOptional(_ value: Int64?) {
        writeSpoolBool(value != nil)
        if let value { writeInteger(value) }
    }

    fileprivate mutating func spoolInteger<T: FixedWidthInteger>(as: T.Type) throws -> T {
        guard let value = readInteger(as: T.self) else { throw SpoolCoding.Malformed(description: "truncated") }
        return value
    }

    fileprivate mutating func spoolBool() throws -> Bool { try spoolInteger(as: UInt8.self) != 0 }

    fileprivate mutating func spoolBytes() throws -> ByteBuffer {
        let length = Int(try spoolInteger(as: UInt32.self))
        guard let slice = readSlice(length: length) else { throw SpoolCoding.Malformed(description: "truncated") }
        return slice
    }

    fileprivate mutating func spoolString() throws -> String {
        let length = Int(try spoolInteger(as: UInt32.self))
        guard let string = readString(length: length) else { throw SpoolCoding.Malformed(description: "truncated") }
        return string
    }

    fileprivate mutating func spoolOptionalString() throws -> String? { try spoolBool() ? try spoolString() : nil }

    fileprivate mutating func spoolOptional() throws -> Int64? { try spoolBool() ? try spoolInteger(as: Int64.self) : nil }
}
