public import MQTTCodec

/// The network side of one client connection, as the broker core sees it. Implemented by the
/// transport layer on a NIO channel and by a recording fake in tests. Called only on the
/// broker's event loop.
public protocol ClientTransport: AnyObject {
    /// Queues a packet for writing; nothing reaches the network until `flush()`.
    func write(_ packet: MQTTPacket, version: MQTTProtocolVersion)
    /// Sends what was written.
    func flush()
    /// Closes the network connection (after flushing what was written).
    func close()
    /// False while the network cannot take more data; the broker then queues instead of writing,
    /// and drains when the transport calls `Broker.writabilityChanged(_:)`.
    var isWritable: Bool { get }
    /// The peer's address, for logs.
    var remoteAddress: String { get }
    /// Whether the listener the connection arrived on is bound to a loopback address: anonymous
    /// clients are accepted there by default (`auth.allow_anonymous = "loopback"`).
    var isOnLoopbackListener: Bool { get }
    /// Stops or resumes reading from the peer (TCP flow control holds it back meanwhile).
    func setReading(_ enabled: Bool)
}
