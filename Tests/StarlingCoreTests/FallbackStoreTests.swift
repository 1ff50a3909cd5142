import Logging
import MQTTCodec
import NIOCore
import StarlingCore
import StarlingTesting
import Synchronization
import Testing

/// The SQLite fallback's logic (README "SQLite fallback"), with an in-memory primary that can
/// be made unreachable and an in-memory spool.
@Suite struct FallbackStoreTests {
    let primary = InMemoryStore()
    let spool = InMemorySpool()

    func makeStore(maxBytes: Int = 1 << 30) -> FallbackStore {
        FallbackStore(
            primary: primary, spool: spool, logger: Logger(label: "test"), switchTimeout: .seconds(5), maxBytes: maxBytes,
            probeInterval: .milliseconds(5))
    }

    /// A store replaying through `line`, switching to the spool after 20 ms without an answer.
    func storeWithLine(_ line: any ReplayLine, lateAnswerTimeout: Duration, probeInterval: Duration = .seconds(1)) -> FallbackStore {
        FallbackStore(
            primary: primary, spool: spool, line: line, logger: Logger(label: "test"), switchTimeout: .milliseconds(20),
            lateAnswerTimeout: lateAnswerTimeout, probeInterval: probeInterval)
    }

    /// The modes a store goes through, as they change.
    func modes(of store: FallbackStore) async -> AsyncStream<FallbackStatus.Mode> {
        let (stream, continuation) = AsyncStream.makeStream(of: FallbackStatus.Mode.self)
        await store.setOnModeChange { continuation.yield($0) }
        return stream
    }

    static func row(_ id: Int64) -> StoreOperation {
        .saveMessage(
            StoredMessage(
                id: id, topic: "t", payload: ByteBuffer(string: "\(id)"), qos: .atLeastOnce, retain: false,
                properties: [], expiresAt: nil, publisher: "c"))
    }

    /// A store that went to its spool with `row(1)` (the primary unreachable), and its next
    /// mode changes.
    func spoolingStore() async throws -> (FallbackStore, AsyncStream<FallbackStatus.Mode>.AsyncIterator) {
        let store = makeStore()
        var changes = await modes(of: store).makeAsyncIterator()
        try await store.migrate()
        primary.unreachable = true
        try await store.apply([Self.row(1)])
        #expect(await changes.next() == .spooling)
        return (store, changes)
    }

    func committedRows() -> [StoreOperation] {
        primary.committed.filter { if case .markReplayed = $0 { false } else { true } }
    }

    @Test func spoolsWhileUnreachableThenReplaysInOrderAndGoesBack() async throws {
        let store = makeStore()
        var changes = await modes(of: store).makeAsyncIterator()
        try await store.migrate()
        try await store.apply([Self.row(1)])
        primary.unreachable = true
        try await store.apply([Self.row(2)])
        try await store.apply([Self.row(3), Self.row(4)])
        #expect(await changes.next() == .spooling)
        #expect(committedRows() == [Self.row(1)])
        #expect(spool.operations == [[Self.row(2)], [Self.row(3), Self.row(4)]])
        #expect(spool.inDoubt == [true, false])  // row 2's commit was tried; the rest went straight to the spool
        #expect(store.status.spooledBatches == 2)

        primary.unreachable = false
        #expect(await changes.next() == .replaying)
        #expect(await changes.next() == .direct)
        #expect(committedRows() == [Self.row(1), Self.row(2), Self.row(3), Self.row(4)])
        #expect(primary.committed.last == .markReplayed(spool: spool.id, through: 2))
        #expect(spool.operations.isEmpty)
        #expect(store.status.replayedOperations == 3)
        try await store.apply([Self.row(5)])
        #expect(committedRows().last == Self.row(5))
        #expect(spool.operations.isEmpty)
    }

    @Test func aReplayEndsWhileCommitsKeepComing() async throws {
        let (store, spooled) = try await spoolingStore()
        var changes = spooled
        // A publisher that never pauses: each commit starts as soon as the last one ended.
        let publisher = Task {
            var id: Int64 = 2
            while !Task.isCancelled {
                try await store.apply([Self.row(id)])
                id += 1
            }
            return id
        }
        primary.unreachable = false
        #expect(await changes.next() == .replaying)
        #expect(await changes.next() == .direct)
        publisher.cancel()
        let next = try await publisher.value
        // Every commit, in order, once: those spooled (replayed), then those made directly.
        #expect(committedRows() == (1..<next).map(Self.row))
        #expect(spool.operations.isEmpty)
    }

    @Test func aCommitDuringTheLastReplayTransactionWaitsAndGoesToThePrimary() async throws {
        let (store, spooled) = try await spoolingStore()
        var changes = spooled
        primary.holdCommits = true
        var attempts = primary.attempts.makeAsyncIterator()
        primary.unreachable = false
        #expect(await changes.next() == .replaying)
        // The replay's transaction (row 1 and its mark), held; earlier attempts are the spooled commit's.
        while let count = await attempts.next(), count != 2 {}
        let late = Task { try await store.apply([Self.row(2)]) }
        var turns = 0
        while store.status.commitsWaitingForReplay == 0 && turns < 100_000 {
            await Task.yield()
            turns += 1
        }
        #expect(store.status.commitsWaitingForReplay == 1)
        #expect(spool.operations == [[Self.row(1)]])  // it did not go to the spool
        primary.holdCommits = false
        primary.releaseCommits()
        try await late.value
        #expect(primary.committed == [Self.row(1), .markReplayed(spool: spool.id, through: 1), Self.row(2)])
        #expect(store.status.mode == .direct)
    }

    @Test func aQoS2PacketIDUsedAgainAfterItsPUBRELStartsTheNextReplayTransaction() throws {
        func qos2(_ payload: String) -> StoreOperation {
            .ingest(
                IngestRecord(
                    receivedAt: 1, clientID: "c", username: nil, packetID: 1, topic: "t", payload: ByteBuffer(string: payload),
                    qos: 2, retain: false, contentType: nil, userProperties: [], contentHash: Array(payload.utf8), nodeID: "n",
                    dedup: .qos2))
        }
        let head = [[qos2("a")], [.removeInboundQoS2(clientID: "c", packetID: 1)], [qos2("b")], [Self.row(9)]].enumerated().map {
            SpooledBatch(sequence: Int64($0.offset + 1), data: SpoolCoding.encode($0.element), inDoubt: $0.offset == 0)
        }
        let first = try FallbackStore.transaction(from: head, atMost: 4096)
        #expect(first.last == 2 && first.operations.count == 2)
        #expect(first.operations.allSatisfy { if case .ingest(let r) = $0 { r.replayed && r.mayBeStored } else { true } })
        let second = try FallbackStore.transaction(from: Array(head.dropFirst(2)), atMost: 4096)
        #expect(second.last == 4 && second.operations.count == 2)
    }

    @Test func aRefusedCommitIsNotSpooled() async throws {
        let store = makeStore()
        try await store.migrate()
        primary.refuseCommits = true
        await #expect(throws: InMemoryStore.Refused.self) { try await store.apply([Self.row(1)]) }
        #expect(spool.operations.isEmpty)
        #expect(store.status.mode == .direct)
    }

    @Test func aFullSpoolRefusesWithStoreFull() async throws {
        let store = makeStore(maxBytes: 1_100)
        try await store.migrate()
        primary.unreachable = true
        let big = StoreOperation.saveMessage(
            StoredMessage(
                id: 1, topic: "t", payload: ByteBuffer(repeating: 7, count: 1_000), qos: .atLeastOnce,
                retain: false, properties: [], expiresAt: nil, publisher: "c"))
        try await store.apply([big])
        await #expect(throws: StoreFull.self) { try await store.apply([big]) }
        #expect(spool.operations.count == 1)
        #expect(store.status.full)
    }

    @Test func startsOnTheSpoolWithoutStateAndSaysWhenItIsBack() async throws {
        primary.unreachable = true
        let store = makeStore()
        var changes = await modes(of: store).makeAsyncIterator()
        let (recovered, signal) = AsyncStream.makeStream(of: Void.self)
        await store.setOnRecovered { signal.yield() }
        try await store.migrate()
        #expect(await changes.next() == .spooling)
        let state = try await store.load()
        #expect(state.sessions.isEmpty)
        #expect(store.status.stateDeferred)
        try await store.apply([Self.row(1)])
        primary.unreachable = false
        var events = recovered.makeAsyncIterator()
        _ = await events.next()
        #expect(committedRows() == [Self.row(1)])
        _ = try await store.load()
        #expect(!store.status.stateDeferred)
    }

    @Test(
        "G7: the primary lost between the migration and the load (a database restarted then): the node starts on the spool with its state deferred instead of failing its start, and loads once the primary is back",
        .timeLimit(.minutes(1))
    )
    func aPrimaryLostBeforeTheLoadStartsOnTheSpool() async throws {
        let store = makeStore()
        var changes = await modes(of: store).makeAsyncIterator()
        try await store.migrate()
        primary.unreachable = true
        let state = try await store.load()
        #expect(state.sessions.isEmpty && store.status.stateDeferred)
        #expect(await changes.next() == .spooling)
        primary.unreachable = false
        #expect(await changes.next() == .replaying)
        #expect(await changes.next() == .direct)
        // Asked for after the replay ended (the broker sets it once the load returned): said at once.
        let (recovered, signal) = AsyncStream.makeStream(of: Void.self)
        await store.setOnRecovered { signal.yield() }
        var events = recovered.makeAsyncIterator()
        _ = await events.next()
        _ = try await store.load()
        #expect(!store.status.stateDeferred)
    }

    @Test func aReplayCutShortResumesAfterTheLastRecordedBatch() async throws {
        // An earlier start spooled batches 1 and 2 and replayed 1 before it was killed.
        _ = try await spool.append(SpoolCoding.encode([Self.row(1)]), inDoubt: false)
        _ = try await spool.append(SpoolCoding.encode([Self.row(2)]), inDoubt: false)
        try await primary.apply([Self.row(1), .markReplayed(spool: spool.id, through: 1)])
        let store = makeStore()
        try await store.migrate()
        _ = try await store.load()
        #expect(committedRows() == [Self.row(1), Self.row(2)])
        #expect(spool.operations.isEmpty)
        #expect(store.status.mode == .direct)
    }

    @Test("G7: a start on an empty spool says no replay of it is pending (an earlier start may have been killed before saying so)")
    func aStartOnAnEmptySpoolClearsAPendingReplay() async throws {
        let line = RecordingLine()
        let store = FallbackStore(primary: primary, spool: spool, line: line, logger: Logger(label: "test"))
        try await store.migrate()
        _ = try await store.load()
        #expect(line.calls.withLock { $0 } == ["done"])
        #expect(store.status.mode == .direct)
    }

    @Test func everyOperationSurvivesTheSpoolsByteForm() throws {
        var will = MQTTWill(
            topic: "w", payload: ByteBuffer(string: "bye"), qos: .exactlyOnce, retain: true,
            properties: [.willDelayInterval(5), .contentType("text/plain")])
        will.properties.append(.userProperty("k", "v"))
        var session = StoredSession(
            clientID: "c", version: .v5, expiryInterval: 60, expiresAt: 123, connected: true, username: "u",
            will: will, willDueAt: 456)
        session.epoch = 42
        let subscription = Subscription(
            MQTTSubscription(
                filter: try MQTTTopicFilter("$share/g/a/+"), qos: .atLeastOnce, noLocal: true,
                retainAsPublished: true, retainHandling: .doNotSend), identifier: 9)
        let message = StoredMessage(
            id: 7, topic: "a/b", payload: ByteBuffer(bytes: [0, 1, 2]), qos: .exactlyOnce, retain: true,
            properties: [.messageExpiryInterval(30)], expiresAt: 999, publisher: "p")
        let operations: [StoreOperation] = [
            .saveSession(session), .deleteSession(clientID: "c"),
            .saveSubscription(StoredSubscription(clientID: "c", subscription: subscription)),
            .deleteSubscription(clientID: "c", filter: "x/#"), .saveMessage(message),
            .saveDelivery(
                StoredDelivery(
                    clientID: "c", sequence: 3, messageID: 7, qos: .atLeastOnce, retain: false, subscriptionIdentifiers: [1, 9],
                    shareGroup: ShareGroupKey(name: "g", filter: "a/+"), state: .sent, packetID: 65_535)),
            .updateDelivery(clientID: "c", sequence: 3, state: .released, packetID: 2), .deleteDelivery(clientID: "c", sequence: 3),
            .addInboundQoS2(clientID: "c", packetID: 4), .removeInboundQoS2(clientID: "c", packetID: 4), .setRetained(message),
            .ingest(
                IngestRecord(
                    receivedAt: 1_700_000_000_123, clientID: "c", username: nil, packetID: 8, topic: "a/b",
                    payload: ByteBuffer(string: "{\"t\":1}"), qos: 1, retain: false, contentType: "application/json",
                    userProperties: [("a", "1"), ("b", "2")], contentHash: Array(repeating: 3, count: 32), nodeID: "n1",
                    dedup: .qos1(dup: true, contentOnly: false))),
            .ingest(
                IngestRecord(
                    receivedAt: 1, clientID: "d", username: "u", packetID: nil, topic: "q", payload: ByteBuffer(), qos: 0, retain: true,
                    contentType: nil, userProperties: [], contentHash: [1], nodeID: "n2", dedup: .none)),
            .saveConnectionWill(StoredConnectionWill(clientID: "c", token: 77, will: will)), .deleteConnectionWill(token: 77),
            .markReplayed(spool: "s", through: 12),
            .fenced(
                SessionFence(clientID: "c", epoch: 9, spooledAt: 1_700_000_000_456),
                [.addInboundQoS2(clientID: "c", packetID: 5), .deleteDelivery(clientID: "c", sequence: 4)]),
            .fenced(SessionFence(clientID: "e", epoch: 1), [])
        ]
        #expect(try SpoolCoding.decode(SpoolCoding.encode(operations)) == operations)
        var truncated = SpoolCoding.encode(operations)
        truncated.moveWriterIndex(to: truncated.writerIndex - 3)
        #expect(throws: SpoolCoding.Malformed.self) { try SpoolCoding.decode(truncated) }
    }
}

/// A replay line that answers at once and records what it is asked, in order.
final class RecordingLine: ReplayLine {
    let calls = Mutex<[String]>([])
    let applied = Mutex<[StoreOperation]>([])

    func ping() async throws { calls.withLock { $0.append("ping") } }
    func endEarlierSessions() async throws { calls.withLock { $0.append("end") } }
    func apply(_ operations: [StoreOperation]) async throws {
        calls.withLock { $0.append("apply") }
        applied.withLock { $0 += operations }
    }
    func replayedThrough(spool _: String) async throws -> Int64 {
        calls.withLock { $0.append("through") }
        return 0
    }
    func reset() { calls.withLock { $0.append("reset") } }
    func replayPending(spool _: String, _ pending: Bool) async throws { calls.withLock { $0.append(pending ? "pending" : "done") } }
}

extension FallbackStoreTests {
    @Test(
        "G7: a commit that never ends (a pool still backing off, a connection whose loss is never reported) does not keep the node on its spool: the replay goes through its own line, after ending the node's earlier sessions"
    )
    func aStuckCommitDoesNotHoldTheReplay() async throws {
        let line = RecordingLine()
        let store = storeWithLine(line, lateAnswerTimeout: .milliseconds(20), probeInterval: .milliseconds(5))
        var changes = await modes(of: store).makeAsyncIterator()
        try await store.migrate()
        primary.holdCommits = true  // the live path's commit never answers
        try await store.apply([Self.row(1)])
        #expect(await changes.next() == .spooling)
        #expect(spool.inDoubt == [true])
        #expect(await changes.next() == .replaying)
        #expect(await changes.next() == .direct)
        #expect(line.applied.withLock { $0 } == [Self.row(1), .markReplayed(spool: spool.id, through: 1)])
        // Earlier sessions end before anything is read or replayed.
        let calls = line.calls.withLock { $0 }.filter { $0 != "ping" }
        #expect(calls == ["end", "through", "pending", "apply", "done"])
        primary.holdCommits = false
        primary.releaseCommits()
    }
}

/// A primary whose next commits fail as if their connection was lost, while it still answers.
final class LosingConnections: PersistentStore {
    let name = "losing"
    let inner = InMemoryStore()
    let failures = Mutex(0)

    init(failing: Int) { failures.withLock { $0 = failing } }

    func commit(_ operations: [StoreOperation]) async throws -> Set<SessionFence> {
        let fail = failures.withLock { remaining in
            defer { remaining = max(0, remaining - 1) }
            return remaining > 0
        }
        if fail { throw InMemoryStore.Unreachable() }
        return try await inner.commit(operations)
    }

    func apply(_ operations: [StoreOperation]) async throws { _ = try await commit(operations) }
    func migrate() async throws {}
    func load() async throws -> StoredState { StoredState() }
    func collectGarbage() async throws -> Int { 0 }
    func enforceRetention(before _: Int64?, now _: Int64) async throws -> Int { 0 }
    func loadUsers() async throws -> [StoredUser] { [] }
    func saveUser(_: StoredUser) async throws {}
    func deleteUser(_: String) async throws -> Bool { false }
    func ping() async throws {}
    func isUnreachable(_ error: any Error) -> Bool { error is InMemoryStore.Unreachable }
}

extension FallbackStoreTests {
    static func reading(_ packetID: UInt16) -> StoreOperation {
        .ingest(
            IngestRecord(
                receivedAt: 1, clientID: "dev", username: nil, packetID: packetID, topic: "t", payload: ByteBuffer(string: "r"),
                qos: 1, retain: false, contentType: nil, userProperties: [], contentHash: [1], nodeID: "n1",
                dedup: .qos1(dup: false, contentOnly: false)))
    }

    @Test(
        "a commit whose connection was lost while the primary still answers goes to the primary again, in doubt, fences kept; not to the spool"
    )
    func aLostConnectionIsRetriedOnThePrimary() async throws {
        let primary = LosingConnections(failing: 1)
        let store = FallbackStore(primary: primary, spool: spool, logger: Logger(label: "test"), switchTimeout: .seconds(5))
        try await store.migrate()
        let fence = SessionFence(clientID: "dev", epoch: 3)
        primary.inner.setClaimEpoch(4, of: "dev")  // claimed elsewhere meanwhile
        let stale = try await store.commit([.fenced(fence, [Self.reading(1)]), Self.reading(2)])
        #expect(stale == [fence])
        #expect(spool.operations.isEmpty && store.status.mode == .direct)
        guard case .ingest(let record) = primary.inner.committed.first, primary.inner.committed.count == 1 else {
            Issue.record("committed: \(primary.inner.committed)"); return
        }
        // In doubt: the lost attempt may have committed; the de-duplication rule decides.
        #expect(record.packetID == 2 && record.replayed && record.mayBeStored)
    }

    @Test(
        "a fence overtaken by a claim: on the live path always; in a replay only when the claim came before the spooling (a 250 ms margin)")
    func staleFences() {
        let live = SessionFence(clientID: "c", epoch: 5)
        #expect(!live.isStale(current: 5, claimedAt: nil) && live.isStale(current: 6, claimedAt: nil))
        let spooled = SessionFence(clientID: "c", epoch: 5, spooledAt: 10_000)
        #expect(!spooled.isStale(current: 5, claimedAt: 1_000))
        #expect(spooled.isStale(current: 6, claimedAt: 9_700))  // claimed before: the device had moved
        #expect(!spooled.isStale(current: 6, claimedAt: 9_800))  // within the margin: kept
        #expect(!spooled.isStale(current: 6, claimedAt: 12_000))  // claimed after: acknowledged, kept
        #expect(!spooled.isStale(current: 6, claimedAt: nil))
    }
}

/// A replay line that answers at once and says when it was pinged.
final class SignallingLine: ReplayLine {
    let pings: AsyncStream<Void>
    private let pinged: AsyncStream<Void>.Continuation

    init() { (pings, pinged) = AsyncStream.makeStream() }

    func ping() async throws { pinged.yield() }
    func endEarlierSessions() async throws {}
    func apply(_: [StoreOperation]) async throws {}
    func replayedThrough(spool _: String) async throws -> Int64 { 0 }
    func reset() {}
    func replayPending(spool _: String, _: Bool) async throws {}
}

extension FallbackStoreTests {
    @Test(
        "G2: a commit past its time limit while the primary answers is awaited, not tried again beside it (a late first attempt would store its rows twice)"
    )
    func aSlowCommitIsNotTriedAgainBesideItself() async throws {
        let line = SignallingLine()
        let store = storeWithLine(line, lateAnswerTimeout: .seconds(60))
        try await store.migrate()
        var attempts = primary.attempts.makeAsyncIterator()
        var pings = line.pings.makeAsyncIterator()
        primary.holdCommits = true  // the first attempt waits (a pool with no free connection, a lock)
        let committing = Task { try await store.commit([Self.reading(1)]) }
        _ = await attempts.next()
        _ = await pings.next()  // past the time limit, the store asked whether the primary answers
        primary.holdCommits = false
        primary.releaseCommits()  // the first attempt commits, late
        #expect(try await committing.value.isEmpty)
        guard case .ingest(let record) = primary.committed.first, primary.committed.count == 1 else {
            Issue.record("committed: \(primary.committed)"); return
        }
        #expect(!record.replayed)
        #expect(spool.operations.isEmpty, "\(spool.operations)")
        #expect(store.status.mode == .direct)
    }
}
