public import NIOCore
public import StarlingCore
import Synchronization

/// A clock that moves only when told, for driving the broker's timers in tests.
public final class ManualClock: BrokerClock {
    private let current: Mutex<NIODeadline>
    private let start: NIODeadline
    /// The wall-clock time at `start`.
    public let wallStart: Int64

    public init(start: NIODeadline = .uptimeNanoseconds(1_000_000_000), wallStart: Int64 = 1_767_225_600_000) {
        current = Mutex(start)
        (self.start, self.wallStart) = (start, wallStart)
    }

    public func now() -> NIODeadline { current.withLock { $0 } }

    public func wallClockMilliseconds() -> Int64 {
        wallStart + (now() - start).nanoseconds / 1_000_000
    }

    /// Moves on by `amount` at once (what waits on this clock never waits), then lets other
    /// tasks run.
    public func sleep(for amount: TimeAmount) async throws {
        try Task.checkCancellation()
        advance(by: amount)
        await Task.yield()
    }

    public func advance(by amount: TimeAmount) {
        current.withLock { $0 = $0 + amount }
    }
}
