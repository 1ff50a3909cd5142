public import MQTTCodec
public import StarlingCore

/// A `ClientTransport` that records what the broker writes, for state-machine tests without
/// sockets. Written packets become visible to `take()` once flushed, as on a real socket.
public final class RecordingTransport: ClientTransport {
    public private(set) var written: [MQTTPacket] = []
    public private(set) var flushed: [MQTTPacket] = []
    public private(set) var isClosed = false
    public var isWritable = true
    public private(set) var isReading = true

    public func setReading(_ enabled: Bool) { isReading = enabled }
    public let remoteAddress: String
    public let isLoopbackClient: Bool

    public init(remoteAddress: String = "test", loopbackClient: Bool = true) {
        self.remoteAddress = remoteAddress
        self.isLoopbackClient = loopbackClient
    }

    /// Runs inside every `write`, as NIO runs handlers inside a write that loses writability.
    public var onWrite: (() -> Void)?

    public func write(_ packet: MQTTPacket, version: MQTTProtocolVersion) {
        defer { onWrite?() }
        // Encode and decode, so that every packet the broker writes is proven encodable.
        var buffer = packet.encoded(version: version)
        var decoder = MQTTPacketDecoder(role: .client, version: version, maximumPacketSize: Int.max)
        let decoded = try! decoder.next(from: &buffer)!
        written.append(decoded)
    }

    public func flush() {
        flushed += written
        written.removeAll()
    }

    public func close() {
        flush()
        isClosed = true
    }

    /// The packets flushed since the last call.
    public func take() -> [MQTTPacket] {
        defer { flushed.removeAll() }
        return flushed
    }
}
