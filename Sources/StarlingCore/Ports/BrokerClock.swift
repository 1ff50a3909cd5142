public import NIOCore
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the broker core reads the time, so tests can drive it with a manual clock.
public protocol BrokerClock: Sendable {
    /// Monotonic time, for timers.
    func now() -> NIODeadline
    /// Wall-clock milliseconds since 1970, for what is stored and must survive a restart.
    func wallClockMilliseconds() -> Int64
    /// Waits `amount` by this clock (the cluster's loops: lease renewals, the sweeper, a node
    /// id's wait). A manual clock moves on by it instead of waiting.
    func sleep(for amount: TimeAmount) async throws
}

extension BrokerClock {
    /// The wall-clock time of a monotonic deadline.
    func wallClock(of deadline: NIODeadline) -> Int64 {
        wallClockMilliseconds() + (deadline - now()).nanoseconds / 1_000_000
    }

    /// The monotonic deadline of a stored wall-clock time.
    func deadline(ofWallClock milliseconds: Int64) -> NIODeadline {
        now() + .milliseconds(milliseconds - wallClockMilliseconds())
    }
}

/// The system clocks.
public struct SystemBrokerClock: BrokerClock {
    public init() {}
    public func now() -> NIODeadline { .now() }
    public func sleep(for amount: TimeAmount) async throws {
        try await Task.sleep(for: .nanoseconds(amount.nanoseconds))
    }
    public func wallClockMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
