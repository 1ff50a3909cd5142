import Foundation
/// A configuration value that cannot be used. Its message names the key, the value and what is
/// allowed, and where the value came from, so the operator can fix it at once.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var allowed: String
    /// `file.toml`, `environment variable STARLING_…` or `--flag`.
    public var source: String

    public init(key: String, value: String, allowed: String, source: String) {
        (self.key, self.value, self.allowed, self.source) = (key, value, allowed, source)
    }

    public var description: String {
        "invalid configuration: \(key) = \(Self.maskingPassword(value)) (from \(source)); allowed: \(allowed)"
    }

    /// `postgres://user:secret@host` → `postgres://user:***@host`, so errors never print passwords.
    static func maskingPassword(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text.range(of: "@", range: scheme.upperBound..<text.endIndex),
            let colon = text.range(of: ":", range: scheme.upperBound..<at.lowerBound)
        else { return text }
        return text.replacingCharacters(in: colon.upperBound..<at.lowerBound, with: "***")
    }
}
