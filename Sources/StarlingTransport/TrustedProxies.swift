#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
public import NIOHTTP1

/// The HTTP proxies whose `Forwarded` (RFC 7239) and `X-Forwarded-For` headers a WebSocket
/// listener believes (`mqtt.ws_trusted_proxies`; README "TLS and WebSocket"). Behind nginx or a
/// cloud balancer every WebSocket client arrives from the proxy's address; the proxy names the
/// client in a header, which anyone else could forge. So the header counts only on a connection
/// from a configured address, and only its hops that trusted proxies added: read from the
/// nearest hop back, the first address that is not a trusted proxy is the client.
public struct TrustedProxies: Sendable, Equatable, CustomStringConvertible {
    /// An address with the number of leading bits that must match (32 or 128 for one address).
    struct Range: Sendable, Equatable {
        var bytes: [UInt8]
        var prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var remaining = prefix
            for (a, b) in zip(address, bytes) where remaining > 0 {
                let bits = min(8, remaining)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if a & mask != b & mask { return false }
                remaining -= bits
            }
            return true
        }
    }

    let ranges: [Range]
    public let description: String

    /// No proxy is trusted: headers are ignored.
    public static let none = TrustedProxies(ranges: [], description: "[]")

    private init(ranges: [Range], description: String) {
        (self.ranges, self.description) = (ranges, description)
    }

    /// Parses addresses and CIDR ranges ("127.0.0.1", "10.0.0.0/8", "fd00::/8"); nil when one
    /// is neither.
    public init?(_ specs: [String]) {
        var ranges: [Range] = []
        for spec in specs {
            let parts = spec.split(separator: "/", maxSplits: 1).map(String.init)
            guard let first = parts.first, let bytes = Self.bytes(of: first) else { return nil }
            let prefix: Int
            if parts.count == 2 {
                guard let bits = Int(parts[1]), (0...bytes.count * 8).contains(bits) else { return nil }
                prefix = bits
            } else {
                prefix = bytes.count * 8
            }
            ranges.append(Range(bytes: bytes, prefix: prefix))
        }
        self.init(ranges: ranges, description: "[" + specs.map { "\"\($0)\"" }.joined(separator: ", ") + "]")
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// Whether `address` (an IP address's text) is one of the trusted proxies.
    public func contains(_ address: String) -> Bool {
        guard let bytes = Self.bytes(of: address) else { return false }
        // An IPv4 client of an IPv6 socket arrives as ::ffff:a.b.c.d.
        let v4 =
            bytes.count == 16 && bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
            ? Array(bytes[12...]) : nil
        return ranges.contains { $0.contains(bytes) || (v4.map($0.contains) ?? false) }
    }

    /// The client's address as the proxies tell it, when `peer` (the address the connection
    /// came from) is a trusted proxy and a header names one; nil otherwise (the peer is the
    /// client). `Forwarded` wins over `X-Forwarded-For`. An entry that is not an address
    /// (`unknown`, an obfuscated name) ends the walk at the hop after it.
    public func client(peer: String, headers: HTTPHeaders) -> String? {
        guard !ranges.isEmpty, contains(peer) else { return nil }
        let forwarded: [String] = headers["Forwarded"]
        var hops: [String?] = []
        if forwarded.isEmpty {
            for header in headers["X-Forwarded-For"] {
                for entry in header.split(separator: ",") { hops.append(Self.host(of: String(entry))) }
            }
        } else {
            for header in forwarded {
                for element in header.split(separator: ",") { hops.append(Self.forwardedFor(String(element))) }
            }
        }
        var client: String?
        for hop in hops.reversed() {
            guard let hop, Self.bytes(of: hop) != nil else { break }
            client = hop
            if !contains(hop) { break }
        }
        return client
    }

    /// The `for=` parameter of one element of a `Forwarded` header, unquoted, without its port.
    static func forwardedFor(_ element: String) -> String? {
        for pair in element.split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingSpaces.lowercased() == "for" else { continue }
            var value = parts[1].trimmingSpaces
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return host(of: value)
        }
        return nil
    }

    /// "203.0.113.7", "203.0.113.7:4711", "[2001:db8::1]:4711" or "2001:db8::1" → the address.
    static func host(of text: String) -> String {
        let value = text.trimmingSpaces
        if value.hasPrefix("["), let close = value.firstIndex(of: "]") {
            return String(value[value.index(after: value.startIndex)..<close])
        }
        if value.filter({ $0 == ":" }).count == 1, let colon = value.firstIndex(of: ":") {
            return String(value[..<colon])
        }
        return value
    }

    /// The address's bytes: 4 for IPv4, 16 for IPv6; nil when `text` is neither.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
