import NIOCore
import NIOHTTP1
import NIOWebSocket

/// MQTT over WebSocket (MQTT 5.0 section 6, 3.1.1 section 6): the payloads of binary frames are
/// the MQTT byte stream, bytes written go out as binary frames. It sits between NIO's WebSocket
/// frame codec and `MQTTServerHandler`, which frames packets from the stream as over TCP.
final class WebSocketMQTTAdapter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    private var closeSent = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .continuation:
            // [MQTT-6.0.0-2] A frame may hold several packets or part of one: the handler
            // above reads a stream.
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .text:
            // [MQTT-6.0.0-1] Control packets come in binary frames; anything else closes the
            // connection. 1003: unsupported data.
            sendClose(context: context, code: .unacceptableData)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // Echo the close (RFC 6455 5.5.1), then the connection ends as a TCP close would.
            sendClose(context: context, code: .normalClosure)
        default:
            break  // pong: nothing to do
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: bytes)), promise: promise)
    }

    /// The broker closing the connection: a Close frame first, so WebSocket clients see a clean
    /// end rather than a dropped socket.
    /// For a lingering close (`.output`) the Close frame goes first, then the write side closes.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode != .input, !closeSent, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        context.writeAndFlush(wrapOutboundOut(closeFrame(context: context, code: .normalClosure)), promise: nil)
        context.close(mode: mode, promise: promise)
    }

    private func sendClose(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closeSent else { return context.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(closeFrame(context: context, code: code))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// The Close frame with `code` (RFC 6455 5.5.1); only one is ever sent.
    private func closeFrame(context: ChannelHandlerContext, code: WebSocketErrorCode) -> WebSocketFrame {
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }
}

/// Answers plain HTTP requests on a WebSocket listener (no upgrade, or another path): 404 with
/// a line saying where MQTT is, then closes.
final class WebSocketNotFoundHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let path: String

    init(path: String) {
        self.path = path
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let body = context.channel.allocator.buffer(string: "MQTT over WebSocket is at \(path) (subprotocol mqtt)\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .notFound, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
