import Logging
import MQTTCodec
public import NIOCore
import NIOPosix
public import StarlingCore

/// An address to listen on, `HOST:PORT` (`[::1]:1883` for IPv6; port 0 picks a free port).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; nil when it is not of that form or the port is out of range.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Binds MQTT listeners whose channels all run on the broker's event loop.
public enum MQTTListener {
    /// Binds `address` and returns the server channel; connections are handed to `broker`.
    public static func bind(
        _ address: ListenAddress,
        broker: Broker,
        eventLoop: any EventLoop,
        maximumPacketSize: Int
    ) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: eventLoop, childGroup: eventLoop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Start reads small: NIO keeps each channel's last receive buffer for reuse, and an
            // idle client sends a few bytes a minute. A CONNECT usually fits in 64 bytes; the
            // allocator doubles the size for busy clients whenever a read fills the buffer.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 64, maximum: 65_536))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 256 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(MQTTServerHandler(broker: broker, maximumPacketSize: maximumPacketSize))
                }
            }
        return try await bootstrap.bind(host: address.host, port: address.port).get()
    }
}
