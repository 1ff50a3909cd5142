public import MQTTCodec
import NIOCore

/// The broker's view of one network connection, from accept to close. Confined to the
/// broker's event loop.
public final class Connection {
    enum State {
        /// Accepted; CONNECT not yet received [MQTT-3.1.0-1].
        case awaitingConnect
        /// CONNECT valid; the authenticator has not decided yet: a password check (later packets
        /// are held in order, reading pauses) or an enhanced-authentication exchange (AUTH packets).
        case authenticating
        /// CONNECT accepted; CONNACK waits for the session to be durable. Packets are processed,
        /// but nothing is written before the CONNACK [MQTT-3.2.0-1].
        case connecting
        /// CONNACK 0x00 sent.
        case connected
        /// Closing or closed; further packets are ignored.
        case closed
    }

    public let transport: any ClientTransport
    var state: State = .awaitingConnect
    public internal(set) var version: MQTTProtocolVersion = .v3_1_1
    public internal(set) var clientID: String = ""
    var username: String?
    var session: Session?
    let openedAt: NIODeadline
    var lastReceived: NIODeadline
    /// The keep alive in force (the client's, or Server Keep Alive); 0 = none.
    var keepAlive: UInt16 = 0
    /// True until a DISCONNECT 0x00 says not to publish the will [MQTT-3.1.2-10].
    var publishWillOnClose = true
    /// In a cluster, the token of this connection's will row (a session that is not stored):
    /// the row goes when the connection does.
    var willToken: Int64?
    /// In a cluster, the epoch of the claim this connection's CONNECT made, for the session it
    /// creates or resumes.
    var claimEpoch: Int64?

    // What the client announced in CONNECT (5.0).
    var clientReceiveMaximum = Int(UInt16.max)
    var clientMaximumPacketSize = Int.max
    var clientTopicAliasMaximum: UInt16 = 0
    var requestProblemInformation = true

    /// Inbound aliases the client has set [MQTT-3.3.2-11].
    var inboundAliases: [UInt16: String] = [:]
    /// Outbound aliases the broker has assigned [MQTT-3.3.2-12].
    var outboundAliases: [String: UInt16] = [:]

    /// QoS 1 PUBLISH packets received whose PUBACK waits for a commit (Receive Maximum counts
    /// them with the QoS 2 ones awaiting PUBREL [MQTT-3.3.4-9]).
    var unacknowledgedQoS1 = 0

    /// Written to since the last flush.
    var needsFlush = false
    /// Acknowledgements waiting behind one that waits for the peers; nil for most connections.
    var heldAcknowledgements: AcknowledgementChain?
    /// Authentication in progress, or the method of an enhanced authentication (kept for
    /// re-authentication); nil for most connections, so an idle one pays one pointer.
    var authentication: ConnectionAuthentication?

    /// Why reading from this client is paused; it reads again when no reason is left.
    struct ReadPauses: OptionSet {
        let rawValue: UInt8
        /// A 3.x client has as many QoS 1 messages waiting for their commit as a 5.0 client
        /// would be allowed (it has no Receive Maximum to obey).
        static let acknowledgements = ReadPauses(rawValue: 1)
        /// The store is backlogged (`GroupCommitWriter.onBacklogChanged`).
        static let store = ReadPauses(rawValue: 2)
        /// The authenticator is deciding about the CONNECT.
        static let authentication = ReadPauses(rawValue: 4)
        /// A node link its messages go to is full (a peer is slower than this node).
        static let peers = ReadPauses(rawValue: 8)
    }
    private(set) var readPauses: ReadPauses = []

    func pauseReading(_ reason: ReadPauses) {
        let wasReading = readPauses.isEmpty
        readPauses.insert(reason)
        if wasReading { transport.setReading(false) }
    }

    func resumeReading(_ reason: ReadPauses) {
        guard readPauses.remove(reason) != nil, readPauses.isEmpty else { return }
        transport.setReading(true)
    }

    init(transport: any ClientTransport, now: NIODeadline) {
        self.transport = transport
        self.openedAt = now
        self.lastReceived = now
    }

    public var isConnected: Bool { state == .connected }
    /// Attached to a session: CONNECT accepted (CONNACK sent or about to be).
    var hasSession: Bool { state == .connected || state == .connecting }

    /// Writes a packet and remembers to flush. The flag is set before writing: a write can
    /// re-enter the broker (NIO reports lost writability from inside it).
    func send(_ packet: MQTTPacket) {
        needsFlush = true
        transport.write(packet, version: version)
    }
}

extension Connection: Hashable {
    public static func == (lhs: Connection, rhs: Connection) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// What a connection keeps while it authenticates, and after an enhanced authentication.
final class ConnectionAuthentication {
    /// Packets that arrived during a password check, handled in order once accepted.
    var held: [MQTTPacket] = []
    /// The enhanced-authentication method and the exchange in progress.
    var method: String?
    var exchange: (any EnhancedAuthentication)?
    /// Continues the CONNECT once the exchange succeeds, with the Authentication Method and
    /// Data for the CONNACK.
    var resume: ((MQTTProperties) -> Void)?

    init(method: String? = nil) {
        self.method = method
    }
}
