import NIOCore
import NIOEmbedded
@testable import StarlingTransport
import Testing

/// The PROXY protocol header, as HAProxy's specification (proxy-protocol.txt) lays it out.
@Suite("PROXY protocol header")
struct ProxyProtocolHandlerTests {
    static let signature = ProxyProtocolHandler.v2Signature

    /// A v2 header: version 2, `command`, `family`, then the address block.
    static func v2(command: UInt8 = 0x1, family: UInt8, block: [UInt8]) -> [UInt8] {
        signature + [0x20 | command, family, UInt8(block.count >> 8), UInt8(block.count & 0xFF)] + block
    }

    /// 192.0.2.7:51000 → 198.51.100.1:1883, and a TLV the parser must skip (type 0x04 NOOP).
    static let ipv4Header = v2(family: 0x11, block: [192, 0, 2, 7, 198, 51, 100, 1, 0xC7, 0x38, 0x07, 0x5B, 0x04, 0x00, 0x01, 0x00])

    static func parse(_ bytes: [UInt8]) throws -> SocketAddress?? {
        var buffer = ByteBuffer(bytes: bytes)
        return try ProxyProtocolHandler.parse(&buffer)
    }

    @Test("v2 TCP over IPv4: the source address and port")
    func ipv4() throws {
        let source = try #require(try Self.parse(Self.ipv4Header) ?? nil)
        #expect(source.ipAddress == "192.0.2.7")
        #expect(source.port == 51000)
    }

    @Test("v2 TCP over IPv6")
    func ipv6() throws {
        let source6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [0x05]
        let destination6 = [UInt8](repeating: 0, count: 15) + [0x01]
        let source = try #require(try Self.parse(Self.v2(family: 0x21, block: source6 + destination6 + [0x04, 0xD2, 0x07, 0x5B])) ?? nil)
        #expect(source.ipAddress == "2001:db8::5")
        #expect(source.port == 1234)
    }

    @Test("v2 LOCAL (the balancer's health check) and UNSPEC carry no address")
    func local() throws {
        #expect(try Self.parse(Self.v2(command: 0x0, family: 0x00, block: [])) == .some(nil))
        #expect(try Self.parse(Self.v2(family: 0x00, block: [])) == .some(nil))
    }

    @Test("v1 lines: TCP4, TCP6 and UNKNOWN")
    func v1() throws {
        let tcp4 = try #require(try Self.parse(Array("PROXY TCP4 203.0.113.9 10.0.0.1 40000 1883\r\n".utf8)) ?? nil)
        #expect(tcp4.ipAddress == "203.0.113.9" && tcp4.port == 40000)
        let tcp6 = try #require(try Self.parse(Array("PROXY TCP6 2001:db8::9 2001:db8::1 40001 1883\r\n".utf8)) ?? nil)
        #expect(tcp6.ipAddress == "2001:db8::9" && tcp6.port == 40001)
        #expect(try Self.parse(Array("PROXY UNKNOWN\r\n".utf8)) == .some(nil))
    }

    @Test("an incomplete header waits for more, byte by byte, in both versions")
    func incomplete() throws {
        for header in [Self.ipv4Header, Array("PROXY TCP4 203.0.113.9 10.0.0.1 40000 1883\r\n".utf8)] {
            for length in 0..<header.count {
                #expect(try Self.parse(Array(header.prefix(length))) == nil, "\(length) of \(header.count) bytes")
            }
            #expect(try Self.parse(header) != nil)
        }
    }

    static let notHeaders: [[UInt8]] = {
        var cases: [[UInt8]] = []
        cases.append([0x10, 0x0C, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54])  // an MQTT CONNECT: no header at all
        cases.append(Array("PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n".utf8))  // v1 with a bad address
        cases.append(Array("PROXY TCP4 203.0.113.9 10.0.0.1 40000\r\n".utf8))  // v1 missing a field
        cases.append(Array("PROXY TCP4 203.0.113.9 10.0.0.1 40000 1883\n".utf8))  // v1 without CR
        cases.append(Array(("PROXY " + String(repeating: "x", count: 120)).utf8))  // v1 too long
        cases.append(signature + [0x11, 0x11, 0x00, 0x0C] + [UInt8](repeating: 0, count: 12))  // version 1 in a v2 header
        cases.append(signature + [0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4])  // IPv4 block too short
        return cases
    }()

    @Test("what is not a PROXY header is refused", arguments: notHeaders)
    func refused(bytes: [UInt8]) {
        #expect(throws: ProxyProtocolHandler.Failure.self) { try Self.parse(bytes) }
    }

    @Test("in a pipeline: the bytes after the header flow on, split anywhere, and the source is kept")
    func pipeline() throws {
        let payload: [UInt8] = [0x10, 0x0C, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54]
        let stream = Self.ipv4Header + payload
        for split in 1..<stream.count {
            let handler = ProxyProtocolHandler()
            let channel = EmbeddedChannel(handler: handler)
            try channel.writeInbound(ByteBuffer(bytes: stream.prefix(split)))
            try channel.writeInbound(ByteBuffer(bytes: stream.dropFirst(split)))
            var received: [UInt8] = []
            while let part = try channel.readInbound(as: ByteBuffer.self) { received += Array(part.readableBytesView) }
            #expect(received == payload, "split at \(split)")
            #expect(handler.source?.ipAddress == "192.0.2.7")
            _ = try channel.finish()
        }
    }
}
