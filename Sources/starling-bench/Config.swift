import MQTTCodec
import NIOCore

/// Everything a client needs to know about the run; fixed before the first connection.
struct RunConfig: Sendable {
    var address: SocketAddress
    var version: MQTTProtocolVersion
    var username: String?
    var password: String?
    var keepAlive: UInt16
    /// QoS of the PUBLISH packets sent.
    var qos: MQTTQoS
    /// QoS requested in SUBSCRIBE.
    var subscribeQoS: MQTTQoS
    /// Payload bytes of each PUBLISH.
    var payloadSize: Int
    /// `pub --json-payload`: each payload is a JSON object (see `JSONPayload`) instead of
    /// the binary header and padding.
    var jsonPayload = false
    /// Messages per second per publisher; 0 = as fast as the socket takes them.
    var rate: Double
    /// Unacknowledged QoS 1/2 PUBLISH packets per publisher.
    var inflight: Int
    var connectTimeout: TimeAmount = .seconds(10)
    /// Bytes queued in a channel above which it stops being writable.
    var writeHighWater: Int = 256 * 1024
    var writeLowWater: Int = 64 * 1024
}

enum ClientRole: Sendable {
    /// Connects and stays idle (PINGREQ per keep alive).
    case idle
    case publisher
    case subscriber
}

/// One client to open.
struct ClientSpec: Sendable {
    var role: ClientRole
    /// Index among the clients of its role (0-based); a publisher writes it into each payload.
    var index: Int
    var clientID: String
    /// Publishers: the topic name.
    var topic: String = ""
    /// Subscribers: the filters, sent in SUBSCRIBE packets of at most `filtersPerSubscribe`.
    var filters: [String] = []
    /// Publishers: messages to send, 0 = unlimited.
    var messageLimit: Int = 0
    /// Subscribers: whether deliveries count as measured ones (false for filler subscriptions).
    var measured: Bool = true
}

let filtersPerSubscribe = 100

/// The payload of a generated message begins with this header when it is large enough:
/// send time (monotonic ns, 8 bytes), publisher index (4 bytes), sequence number (4 bytes),
/// all big-endian. A payload of 8 to 15 bytes carries the send time only.
enum PayloadHeader {
    static let size = 16
    static let timestampSize = 8
    /// Publisher indices above this are taken for foreign payloads and not tracked.
    static let maxPublisherIndex = 1 << 20
}

/// Counters kept per event loop and summed once a second.
struct Counters: Sendable {
    var connectAttempts = 0
    var connected = 0
    var connectFailed = 0
    /// Subscribers whose every SUBSCRIBE was acknowledged.
    var subscribed = 0
    /// Topic filters refused in a SUBACK.
    var subscribeRefused = 0
    /// Connections lost after CONNACK that this program did not close.
    var dropped = 0
    var sent = 0
    var acked = 0
    /// QoS 1/2 acknowledgements with a failure reason code (5.0), or for unknown packet ids.
    var rejected = 0
    var inflight = 0
    var received = 0
    var duplicates = 0
    /// Publishers that reached their message limit.
    var publishersDone = 0
    /// Monotonic ns of the last measured delivery.
    var lastReceive: UInt64 = 0
    /// Sink only: open connections.
    var open = 0
    /// Sink only: forwarded messages (`--forward`), and those dropped at an unwritable subscriber.
    var forwarded = 0
    var discarded = 0

    /// The counters that add up across event loops (`lastReceive` takes the latest instead).
    static var summed: [WritableKeyPath<Counters, Int>] {
        [
            \.connectAttempts, \.connected, \.connectFailed, \.subscribed, \.subscribeRefused, \.dropped, \.sent, \.acked, \.rejected,
            \.inflight, \.received, \.duplicates, \.publishersDone, \.open, \.forwarded, \.discarded
        ]
    }

    mutating func add(_ o: Counters) {
        for counter in Self.summed { self[keyPath: counter] += o[keyPath: counter] }
        lastReceive = max(lastReceive, o.lastReceive)
    }
}

/// The payload of `pub --json-payload`: `{"n":"<16 hex digits>","p":"xxx…"}` padded to the
/// requested size, where the digits are the publisher index (high 32 bits) and its sequence
/// number, so every message is distinct valid JSON (what the ingest bridge stores as
/// `payload_json`). It carries no send time: `pub` does not measure latency.
enum JSONPayload {
    static let prefix = #"{"n":""#
    static let digits = 16
    static let minimumSize = prefix.utf8.count + digits + #"","p":""}"#.utf8.count

    static func template(size: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString(prefix)
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: digits)
        buffer.writeString(#"","p":""#)
        buffer.writeRepeatingByte(UInt8(ascii: "x"), count: size - minimumSize)
        buffer.writeString(#""}"#)
        return buffer
    }

    /// Writes `value` as 16 lower-case hex digits at `index`.
    static func setCounter(_ value: UInt64, in buffer: inout ByteBuffer, at index: Int) {
        let hex = Array("0123456789abcdef".utf8)
        for position in 0..<digits {
            let nibble = Int((value >> UInt64(4 * (digits - 1 - position))) & 0xF)
            buffer.setInteger(hex[nibble], at: index + prefix.utf8.count + position)
        }
    }
}
