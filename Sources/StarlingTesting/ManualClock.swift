public import NIOCore
public import StarlingCore
import Synchronization

/// A clock that moves only when told, for driving the broker's timers in tests.
public final class ManualClock: BrokerClock {
    private let current: Mutex<NIODeadline>

    public init(start: NIODeadline = .uptimeNanoseconds(1_000_000_000)) {
        current = Mutex(start)
    }

    public func now() -> NIODeadline { current.withLock { $0 } }

    public func advance(by amount: TimeAmount) {
        current.withLock { $0 = $0 + amount }
    }
}
