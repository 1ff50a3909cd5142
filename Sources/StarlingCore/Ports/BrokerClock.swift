public import NIOCore

/// Where the broker core reads the time, so tests can drive it with a manual clock.
public protocol BrokerClock: Sendable {
    func now() -> NIODeadline
}

/// The monotonic system clock.
public struct SystemBrokerClock: BrokerClock {
    public init() {}
    public func now() -> NIODeadline { .now() }
}
