public import NIOCore

/// An address to listen on, `HOST:PORT` (`[::1]:1883` for IPv6; port 0 picks a free port).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        (self.host, self.port) = (host, port)
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

    /// Whether `host` names only this machine: 127.0.0.0/8, ::1, localhost. `0.0.0.0` and `::`
    /// are not: they accept from anywhere.
    public static func isLoopback(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "::1" || host == "localhost" || host.hasPrefix("::ffff:127.")
    }

    public var isLoopback: Bool { Self.isLoopback(host) }

    /// The address a channel is bound to (port 0 resolved); nil for one without a port.
    public init?(bound address: SocketAddress?) {
        guard let address, let port = address.port else { return nil }
        self.init(host: address.ipAddress ?? "?", port: port)
    }
}
