import Synchronization

/// A value one service hands to the others once it has it (the broker's bound address for the
/// cluster; the joined cluster for the broker and the sweeper): a waiter gets it, or nil when it
/// will never come (its giver failed) or when the waiter is cancelled (the node is stopping).
final class Handoff<Value: Sendable>: Sendable {
    private struct State {
        var given = false
        var value: Value?
        var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    /// Gives `value` (nil: it will never come) to every waiter, now and later; only the first
    /// call counts.
    func give(_ value: Value?) {
        let waiters = state.withLock { state -> [CheckedContinuation<Value?, Never>] in
            guard !state.given else { return [] }
            state.given = true
            state.value = value
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: value) }
    }

    /// The value once given; nil if it never comes or this task is cancelled first.
    func value() async -> Value? {
        let id = state.withLock { state -> Int in
            state.next += 1
            return state.next
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
                let answer = state.withLock { state -> Value?? in
                    if state.given { return .some(state.value) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return .none
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }
}
