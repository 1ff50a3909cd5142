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
    /// Whether the client counts as local for `auth.allow_anonymous = "loopback"`: decided by the
    /// listener's configured address (127.0.0.0/8, ::1), never by the address a connection
    /// happened to reach, so a `0.0.0.0` listener is not loopback for a client (or a proxy on
    /// the same host) that connects to 127.0.0.1. Behind the PROXY protocol, the address the
    /// balancer announced decides, never the balancer's own.
    var isLoopbackClient: Bool { get }
    /// Stops or resumes reading from the peer (TCP flow control holds it back meanwhile).
    func setReading(_ enabled: Bool)
}
