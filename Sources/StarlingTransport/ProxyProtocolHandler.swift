import NIOCore

/// Reads the PROXY protocol header (HAProxy's specification, versions 1 and 2) that a load
/// balancer sends before the client's bytes, so the broker logs and authorizes the client's
/// address rather than the balancer's. With the protocol enabled the header is required: a
/// connection without one is closed (as HAProxy's own `accept-proxy` does), since otherwise any
/// client could claim any address. Once read, the handler passes the rest on and leaves the
/// pipeline. Once read, the handler passes everything on, and stays in the pipeline so that
/// `MQTTServerHandler` (added later on WebSocket listeners) can ask it for `source`.
final class ProxyProtocolHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// `\r\n\r\n\0\r\nQUIT\n`
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// A v1 line is at most 107 bytes; a v2 address block is refused above this.
    static let v1MaximumLength = 107
    static let v2MaximumLength = 16 + 1024

    enum Failure: Error, CustomStringConvertible {
        case notProxyProtocol, malformed(String)
        var description: String {
            switch self {
            case .notProxyProtocol: "the connection did not start with a PROXY protocol header (mqtt.proxy_protocol is on)"
            case .malformed(let why): "malformed PROXY protocol header: \(why)"
            }
        }
    }

    private var buffer: ByteBuffer?
    private var done = false
    /// The client's address as the balancer announced it; nil before the header, and for a
    /// LOCAL (health check) or UNKNOWN header, where the connection's own address stands.
    private(set) var source: SocketAddress?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return context.fireChannelRead(data) }
        var incoming = unwrapInboundIn(data)
        if var pending = buffer.take() {
            pending.writeBuffer(&incoming)
            incoming = pending
        }
        do {
            guard let source = try Self.parse(&incoming) else {
                buffer = incoming  // incomplete: wait for more
                return
            }
            done = true
            self.source = source
            if incoming.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(incoming)) }
        } catch {
            done = true
            context.fireErrorCaught(error)
        }
    }

    /// Reads a complete header from `buffer`: the announced source (nil for LOCAL/UNKNOWN), or
    /// nil-nil while incomplete; throws when it is not a valid header.
    static func parse(_ buffer: inout ByteBuffer) throws -> SocketAddress?? {
        let available = buffer.readableBytesView
        if available.starts(with: v2Signature.prefix(available.count)) {
            return try parseV2(&buffer)
        }
        let v1Prefix = Array("PROXY ".utf8)
        if available.starts(with: v1Prefix.prefix(available.count)) {
            return try parseV1(&buffer)
        }
        throw Failure.notProxyProtocol
    }

    private static func parseV2(_ buffer: inout ByteBuffer) throws -> SocketAddress?? {
        guard buffer.readableBytes >= 16 else { return nil }
        let start = buffer.readerIndex
        let versionCommand = buffer.getInteger(at: start + 12, as: UInt8.self)!
        let familyTransport = buffer.getInteger(at: start + 13, as: UInt8.self)!
        let length = Int(buffer.getInteger(at: start + 14, as: UInt16.self)!)
        guard versionCommand >> 4 == 2 else { throw Failure.malformed("version \(versionCommand >> 4), expected 2") }
        guard length <= v2MaximumLength - 16 else { throw Failure.malformed("address block of \(length) bytes") }
        guard buffer.readableBytes >= 16 + length else { return nil }
        buffer.moveReaderIndex(forwardBy: 16)
        var block = buffer.readSlice(length: length)!
        switch versionCommand & 0x0F {
        case 0x0:
            return .some(nil)  // LOCAL: the balancer's own connection (a health check)
        case 0x1:
            break
        default:
            throw Failure.malformed("command \(versionCommand & 0x0F)")
        }
        switch familyTransport {
        case 0x11:  // TCP over IPv4: source, destination, source port, destination port
            guard let source = block.readBytes(length: 4), block.readBytes(length: 4) != nil, let port = block.readInteger(as: UInt16.self)
            else {
                throw Failure.malformed("IPv4 address block of \(length) bytes")
            }
            return .some(try SocketAddress(packedIPAddress: ByteBuffer(bytes: source), port: Int(port)))
        case 0x21:  // TCP over IPv6
            guard let source = block.readBytes(length: 16), block.readBytes(length: 16) != nil,
                let port = block.readInteger(as: UInt16.self)
            else {
                throw Failure.malformed("IPv6 address block of \(length) bytes")
            }
            return .some(try SocketAddress(packedIPAddress: ByteBuffer(bytes: source), port: Int(port)))
        default:
            return .some(nil)  // UNSPEC, UDP or UNIX: no address to use
        }
    }

    private static func parseV1(_ buffer: inout ByteBuffer) throws -> SocketAddress?? {
        let view = buffer.readableBytesView
        guard let lineFeed = view.firstIndex(of: 0x0A) else {
            if view.count > v1MaximumLength { throw Failure.malformed("a version 1 line longer than \(v1MaximumLength) bytes") }
            return nil
        }
        let length = lineFeed - view.startIndex + 1
        guard length <= v1MaximumLength, length >= 2, view[lineFeed - 1] == 0x0D else {
            throw Failure.malformed("a version 1 line not ended by CRLF")
        }
        let line = buffer.readString(length: length - 2)!  // not dropLast(2): "\r\n" is one Character
        buffer.moveReaderIndex(forwardBy: 2)
        let fields = line.split(separator: " ")
        if fields.count >= 2, fields[1] == "UNKNOWN" { return .some(nil) }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6", let port = Int(fields[4]), (0...65535).contains(port) else {
            throw Failure.malformed("\"\(line)\"")
        }
        do {
            return .some(try SocketAddress(ipAddress: String(fields[2]), port: port))
        } catch {
            throw Failure.malformed("source address \"\(fields[2])\"")
        }
    }
}
