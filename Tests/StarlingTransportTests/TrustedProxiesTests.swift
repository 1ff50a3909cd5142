import NIOHTTP1
@testable import StarlingTransport
import Testing

/// Which address a WebSocket client has behind HTTP proxies (`mqtt.ws_trusted_proxies`): the
/// headers count only from a trusted peer, and only the hops trusted proxies added.
@Suite("Trusted proxies")
struct TrustedProxiesTests {
    static let proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.2", "fd00::/8"])!

    static func headers(_ pairs: (String, String)...) -> HTTPHeaders {
        HTTPHeaders(pairs.map { ($0.0, $0.1) })
    }

    @Test("addresses and ranges, IPv4 and IPv6, an IPv4 client of an IPv6 socket")
    func ranges() {
        #expect(Self.proxies.contains("10.200.3.4"))
        #expect(!Self.proxies.contains("11.0.0.1"))
        #expect(Self.proxies.contains("127.0.0.2"))
        #expect(!Self.proxies.contains("127.0.0.1"))
        #expect(Self.proxies.contains("fd12::1"))
        #expect(!Self.proxies.contains("fe80::1"))
        #expect(Self.proxies.contains("::ffff:10.1.2.3"))
        #expect(!Self.proxies.contains("not an address"))
        #expect(TrustedProxies(["0.0.0.0/0"])!.contains("203.0.113.9"))
    }

    @Test("what is not an address or a range is refused", arguments: ["10.0.0.0/33", "example.com", "10.0.0.0/x", "", "::1/129"])
    func refused(spec: String) {
        #expect(TrustedProxies([spec]) == nil)
    }

    @Test("X-Forwarded-For from a trusted peer: the nearest hop that is not a proxy")
    func forwardedFor() {
        let headers = Self.headers(("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.5"))
        #expect(Self.proxies.client(peer: "10.0.0.9", headers: headers) == "203.0.113.7")
    }

    @Test("headers from a peer that is not trusted are ignored")
    func untrustedPeer() {
        let headers = Self.headers(("X-Forwarded-For", "203.0.113.7"))
        #expect(Self.proxies.client(peer: "127.0.0.1", headers: headers) == nil)
        #expect(TrustedProxies.none.client(peer: "10.0.0.9", headers: headers) == nil)
    }

    @Test("no header from a trusted peer: the peer is the client")
    func noHeader() {
        #expect(Self.proxies.client(peer: "10.0.0.9", headers: HTTPHeaders()) == nil)
    }

    @Test("Forwarded (RFC 7239) wins, quoted IPv6 with a port, several headers in order")
    func forwarded() {
        let headers = Self.headers(
            ("X-Forwarded-For", "198.51.100.99"),
            ("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("Forwarded", "For=\"[2001:db8:cafe::17]:4711\", for=10.1.1.1"))
        #expect(Self.proxies.client(peer: "10.0.0.9", headers: headers) == "2001:db8:cafe::17")
    }

    @Test("an entry that is not an address ends the walk at the hop after it")
    func obfuscated() {
        let headers = Self.headers(("Forwarded", "for=unknown, for=10.0.0.7"))
        #expect(Self.proxies.client(peer: "10.0.0.9", headers: headers) == "10.0.0.7")
        let ports = Self.headers(("X-Forwarded-For", "203.0.113.7:5555"))
        #expect(Self.proxies.client(peer: "10.0.0.9", headers: ports) == "203.0.113.7")
    }
}
