/// One condition of readiness, as `/readyz` reports it.
public struct HealthCheck: Sendable, Equatable, Codable {
    public var name: String
    public var passing: Bool
    /// What was found: the address, the store, or why the check fails.
    public var detail: String
    /// A word for scripts where the check has one: the store's "postgres", "spooling",
    /// "replaying", "sqlite".
    public var state: String?

    public init(name: String, passing: Bool, detail: String, state: String? = nil) {
        (self.name, self.passing, self.detail, self.state) = (name, passing, detail, state)
    }
}

/// One value for `/metrics`.
public struct MetricValue: Sendable, Equatable {
    public enum Kind: Sendable { case counter, gauge }
    /// Prometheus name, e.g. `starling_messages_received_total`.
    public var name: String
    public var help: String
    public var kind: Kind
    public var value: Double

    public init(_ name: String, _ kind: Kind, _ value: Double, help: String) {
        (self.name, self.kind, self.value, self.help) = (name, kind, value, help)
    }
}

/// What the operations endpoints ask of the node. Implementations read live state: nothing is
/// cached between requests, so the answers are as true as the moment they are asked.
public protocol OpsSource: Sendable {
    /// `/healthz`: nil while the node works (its event loop answers), else why not.
    func liveness() async -> String?
    /// `/readyz`: every condition for serving clients; ready when all pass.
    func readiness() async -> [HealthCheck]
    /// `/metrics`: counters and gauges of the moment.
    func metrics() async -> [MetricValue]
}
