import Logging
import MQTTCodec
public import NIOCore
import NIOHTTP1
import NIOPosix
public import NIOSSL
import NIOWebSocket
public import StarlingCore

/// What a listener speaks below MQTT.
public enum ListenerKind: Sendable {
    /// MQTT over TCP.
    case tcp
    /// MQTT over TLS.
    case tls(NIOSSLContext)
    /// MQTT over WebSocket: an HTTP/1.1 upgrade at `path`, subprotocol `mqtt` [MQTT-6.0.0-3, 4].
    case webSocket(path: String)
    /// MQTT over WebSocket over TLS.
    case secureWebSocket(NIOSSLContext, path: String)

    /// For log lines.
    public var name: String {
        switch self {
        case .tcp: "MQTT"
        case .tls: "MQTT over TLS"
        case .webSocket: "MQTT over WebSocket"
        case .secureWebSocket: "MQTT over secure WebSocket"
        }
    }

    /// The URL scheme clients use: mqtt, mqtts, ws, wss.
    public var scheme: String {
        switch self {
        case .tcp: "mqtt"
        case .tls: "mqtts"
        case .webSocket: "ws"
        case .secureWebSocket: "wss"
        }
    }
}

/// Binds MQTT listeners whose channels all run on the broker's event loop.
public enum MQTTListener {
    /// Binds `address` and returns the server channel; connections are handed to `broker`.
    /// With `proxyProtocol`, each connection must start with a PROXY protocol header (v1 or v2).
    /// A WebSocket upgrade from one of `trustedProxies` names its client in `Forwarded` or
    /// `X-Forwarded-For`.
    public static func bind(
        _ address: ListenAddress,
        kind: ListenerKind = .tcp,
        proxyProtocol: Bool = false,
        trustedProxies: TrustedProxies = .none,
        broker: Broker,
        eventLoop: any EventLoop,
        maximumPacketSize: Int
    ) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: eventLoop, childGroup: eventLoop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Start reads small: NIO keeps each channel's last receive buffer for reuse, and an
            // idle client sends a few bytes a minute. A CONNECT usually fits in 64 bytes; the
            // allocator doubles the size for busy clients whenever a read fills the buffer.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 64, maximum: 65_536))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 256 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    // The balancer's header comes first, before TLS or HTTP.
                    if proxyProtocol { try pipeline.addHandler(ProxyProtocolHandler()) }
                    switch kind {
                    case .tcp:
                        try pipeline.addHandler(
                            MQTTServerHandler(broker: broker, maximumPacketSize: maximumPacketSize, loopbackListener: address.isLoopback))
                    case .tls(let context):
                        try pipeline.addHandler(NIOSSLServerHandler(context: context))
                        try pipeline.addHandler(
                            MQTTServerHandler(broker: broker, maximumPacketSize: maximumPacketSize, loopbackListener: address.isLoopback))
                    case .webSocket(let path):
                        try addWebSocket(
                            to: channel, path: path, broker: broker, maximumPacketSize: maximumPacketSize,
                            loopbackListener: address.isLoopback,
                            trustedProxies: trustedProxies)
                    case .secureWebSocket(let context, let path):
                        try pipeline.addHandler(NIOSSLServerHandler(context: context))
                        try addWebSocket(
                            to: channel, path: path, broker: broker, maximumPacketSize: maximumPacketSize,
                            loopbackListener: address.isLoopback,
                            trustedProxies: trustedProxies)
                    }
                }
            }
        return try await bootstrap.bind(host: address.host, port: address.port).get()
    }

    private static let notFoundHandlerName = "starling.websocket-not-found"

    /// HTTP/1.1 until a WebSocket upgrade at `path`; then binary frames carry the MQTT stream.
    private static func addWebSocket(
        to channel: any Channel, path: String, broker: Broker, maximumPacketSize: Int, loopbackListener: Bool,
        trustedProxies: TrustedProxies
    ) throws {
        let upgrader = NIOWebSocketServerUpgrader(
            // A frame may carry a whole packet: allow the largest packet plus the frame header.
            maxFrameSize: min(maximumPacketSize + 16, Int(UInt32.max)),
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let requestPath = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                guard requestPath == path, let subprotocol = webSocketSubprotocol(head.headers) else {
                    return channel.eventLoop.makeSucceededFuture(nil)  // answered 404 below
                }
                var headers = HTTPHeaders()
                if let subprotocol { headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, head in
                channel.pipeline.removeHandler(name: notFoundHandlerName).flatMapThrowing {
                    let pipeline = channel.pipeline.syncOperations
                    // The hop the connection came from: the balancer's announced client (PROXY
                    // protocol) or the peer; a trusted proxy's headers name the client behind it.
                    let announced = try? pipeline.handler(type: ProxyProtocolHandler.self).source
                    let forwarded = ((announced ?? channel.remoteAddress)?.ipAddress).flatMap {
                        trustedProxies.client(peer: $0, headers: head.headers)
                    }
                    try pipeline.addHandler(WebSocketMQTTAdapter())
                    try pipeline.addHandler(
                        MQTTServerHandler(
                            broker: broker, maximumPacketSize: maximumPacketSize, loopbackListener: loopbackListener,
                            forwardedClient: forwarded))
                }
            }
        )
        let pipeline = channel.pipeline.syncOperations
        try pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        try pipeline.addHandler(WebSocketNotFoundHandler(path: path), name: notFoundHandlerName)
    }

    /// The subprotocol to answer with: `mqtt` when offered [MQTT-6.0.0-4] (`mqttv3.1` for 3.1
    /// clients); `.some(nil)` when the client offered none (answered without the header); nil
    /// (refused) when it offered only others.
    static func webSocketSubprotocol(_ headers: HTTPHeaders) -> String?? {
        let offered = headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }  // split at commas, trimmed
        if offered.isEmpty { return .some(nil) }
        for name in ["mqtt", "mqttv3.1"] where offered.contains(name) { return .some(name) }
        return nil
    }
}
