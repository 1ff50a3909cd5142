/// A configuration value that cannot be used. Its message names the key, the value and what is
/// allowed, and where the value came from, so the operator can fix it at once.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var allowed: String
    /// `file.toml`, `environment variable STARLING_…` or `--flag`.
    public var source: String

    public init(key: String, value: String, allowed: String, source: String) {
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source
    }

    public var description: String {
        "invalid configuration: \(key) = \(value) (from \(source)); allowed: \(allowed)"
    }
}
