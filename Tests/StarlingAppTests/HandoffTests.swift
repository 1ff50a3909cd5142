import Testing

@testable import StarlingApp

/// How the node's services hand each other what they wait for (docs/architecture.md "The process").
@Suite("Handoff between services")
struct HandoffTests {
    @Test("waiters before and after get the value given once; later gifts are ignored")
    func givesOnce() async {
        let handoff = Handoff<String>()
        async let early = handoff.value()
        await Task.yield()
        handoff.give("127.0.0.1:1883")
        handoff.give("ignored")
        #expect(await early == "127.0.0.1:1883")
        #expect(await handoff.value() == "127.0.0.1:1883")
    }

    @Test("nil tells every waiter it will never come (the giver failed)")
    func neverComes() async {
        let handoff = Handoff<Int>()
        async let waiting = handoff.value()
        handoff.give(nil)
        #expect(await waiting == nil)
        #expect(await handoff.value() == nil)
    }

    @Test("a cancelled waiter gets nil, and the value still reaches the others")
    func cancelledWaiter() async {
        let handoff = Handoff<Int>()
        let cancelled = Task { await handoff.value() }
        cancelled.cancel()
        #expect(await cancelled.value == nil)
        let other = Task { await handoff.value() }
        handoff.give(7)
        #expect(await other.value == 7)
    }
}
