import MQTTCodec
import NIOCore
import StarlingCore
import Testing

/// The ingest bridge's de-duplication (docs/architecture.md, "The ingest bridge", guarantee G2) and retention, checked
/// on every store: the rule is the product's promise, and each adapter implements it in its
/// own SQL.
enum IngestConformance {
    static let checks: [(name: String, check: StoreConformance.Check)] = [
        ("ingest: QoS 0 rows are always stored", qos0),
        ("ingest: a QoS 1 re-send (DUP 1, same packet id and content) is no second row; DUP 0 is a new reading", qos1Resend),
        ("ingest: the same packet id with other content is a new row, DUP or not", qos1NewContent),
        ("ingest: dedup = content drops the DUP condition", contentDedup),
        ("ingest: QoS 2 row and inbound entry commit together; re-sends are duplicates until PUBREL", qos2),
        ("ingest: copies of one message in two concurrent batches make one row", concurrentCopies),
        ("ingest: copies of one message within one batch make one row", copiesInOneBatch),
        (
            "ingest: a replayed record applied twice, or an original replayed after its DUP copy, makes one row (QoS 0: from the batch in doubt)",
            replayed
        ),
        ("ingest: a replayed QoS 2 original after its re-send was stored and released elsewhere makes no row and no entry", replayedQoS2),
        ("ingest: retention removes rows older than the limit and nothing else", retention)
    ]

    /// A day in the past, at 12:00 UTC (retention works on whole days in PostgreSQL).
    static let noon: Int64 = 1_764_763_200_000

    static func record(
        _ payload: String, id: UInt16?, qos: UInt8, dup: Bool = false, contentOnly: Bool = false,
        client: String = "dev", at time: Int64 = noon
    ) -> IngestRecord {
        let dedup: IngestRecord.Dedup =
            switch qos {
            case 0: .none
            case 1: .qos1(dup: dup, contentOnly: contentOnly)
            default: .qos2
            }
        return IngestRecord(
            receivedAt: time, clientID: client, username: nil, packetID: qos == 0 ? nil : id, topic: "t/\(client)",
            payload: ByteBuffer(string: payload), qos: qos, retain: false, contentType: nil, userProperties: [],
            contentHash: Array("t/\(client)\u{0}\(payload)".utf8), nodeID: "n1", dedup: dedup)
    }

    static func rows(_ subject: StoreUnderTest) async throws -> [String] {
        try await subject.ingestedRows().map(\.description)
    }

    static func ingest(_ subject: StoreUnderTest, _ records: IngestRecord...) async throws {
        for record in records { try await subject.store.apply([.ingest(record)]) }
    }

    static func qos0(_ subject: StoreUnderTest) async throws {
        try await ingest(subject, record("a", id: nil, qos: 0), record("a", id: nil, qos: 0))
        try await subject.store.apply([.ingest(record("a", id: nil, qos: 0)), .ingest(record("a", id: nil, qos: 0))])
        #expect(try await rows(subject) == Array(repeating: "dev/-/a", count: 4))
    }

    static func qos1Resend(_ subject: StoreUnderTest) async throws {
        try await ingest(subject, record("21.5", id: 1, qos: 1))
        try await ingest(subject, record("21.5", id: 1, qos: 1, dup: true))  // the re-send after a failover
        #expect(try await rows(subject) == ["dev/1/21.5"])
        try await ingest(subject, record("21.5", id: 1, qos: 1))  // a steady sensor's next reading
        #expect(try await rows(subject) == ["dev/1/21.5", "dev/1/21.5"])
        // Another client's identical message with the same packet id is its own row.
        try await ingest(subject, record("21.5", id: 1, qos: 1, dup: true, client: "other"))
        #expect(try await rows(subject) == ["dev/1/21.5", "dev/1/21.5", "other/1/21.5"])
    }

    /// What a spool replay brings (README "SQLite fallback"), and what it must not swallow.
    static func replayed(_ subject: StoreUnderTest) async throws {
        func replay(_ record: IngestRecord) -> IngestRecord {
            var record = record
            record.replayed = true
            return record
        }
        // The batch in flight when PostgreSQL went away committed, and is replayed from the spool.
        try await ingest(subject, record("1", id: 1, qos: 1), replay(record("1", id: 1, qos: 1)))
        // A device re-sent with DUP through another node, whose copy was stored first; the
        // original, received earlier, is replayed after it.
        try await ingest(subject, record("2", id: 2, qos: 1, dup: true, at: noon + 500), replay(record("2", id: 2, qos: 1, at: noon)))
        // Both copies replayed in one batch, in either order.
        try await subject.store.apply([
            .ingest(replay(record("3", id: 3, qos: 1, dup: true, at: noon + 500))),
            .ingest(replay(record("3", id: 3, qos: 1, at: noon)))
        ])
        #expect(try await rows(subject) == ["dev/1/1", "dev/2/2", "dev/3/3"])
        // A later identical reading with the packet id is a new row, replayed or not.
        try await ingest(subject, replay(record("1", id: 1, qos: 1, at: noon + 1_000)), record("1", id: 1, qos: 1, at: noon + 2_000))
        #expect(try await rows(subject) == ["dev/1/1", "dev/2/2", "dev/3/3", "dev/1/1", "dev/1/1"])
        // QoS 0 has no key: a record of the batch in flight at the switch is skipped when its
        // row exists; another reading with the same content is not.
        var inDoubt = replay(record("q", id: nil, qos: 0, at: noon + 3_000))
        inDoubt.mayBeStored = true
        try await ingest(subject, record("q", id: nil, qos: 0, at: noon + 3_000), inDoubt)
        inDoubt.receivedAt = noon + 4_000
        try await ingest(subject, inDoubt)
        #expect(try await rows(subject).filter { $0.hasSuffix("/q") } == ["dev/-/q", "dev/-/q"])
    }

    /// A QoS 2 reading spooled on a node whose PUBREC never reached the device: the device re-sent
    /// it through another node, which stored it and released its entry (PUBREL); the original,
    /// received earlier, is replayed after that (docs/architecture.md "Fencing").
    static func replayedQoS2(_ subject: StoreUnderTest) async throws {
        let store = subject.store
        var original = record("r", id: 9, qos: 2, at: noon)
        original.replayed = true
        try await ingest(subject, record("r", id: 9, qos: 2, dup: true, at: noon + 700))
        try await store.apply([.removeInboundQoS2(clientID: "dev", packetID: 9)])
        try await ingest(subject, original)
        #expect(try await rows(subject) == ["dev/9/r"])
        #expect(try await store.load().inboundQoS2.isEmpty)
        // A replayed QoS 2 reading with other content, or received after the last entry, is stored.
        var next = record("s", id: 9, qos: 2, at: noon + 1_000)
        next.replayed = true
        try await ingest(subject, next)
        try await store.apply([.removeInboundQoS2(clientID: "dev", packetID: 9)])
        var later = record("s", id: 9, qos: 2, at: noon + 2_000)
        later.replayed = true
        try await ingest(subject, later)
        #expect(try await rows(subject) == ["dev/9/r", "dev/9/s", "dev/9/s"])
    }

    static func qos1NewContent(_ subject: StoreUnderTest) async throws {
        try await ingest(subject, record("a", id: 7, qos: 1), record("b", id: 7, qos: 1, dup: true), record("c", id: 7, qos: 1))
        // A re-send of "a" now is not the last entry of id 7: it is stored (the documented limit).
        try await ingest(subject, record("c", id: 7, qos: 1, dup: true))
        #expect(try await rows(subject) == ["dev/7/a", "dev/7/b", "dev/7/c"])
    }

    static func contentDedup(_ subject: StoreUnderTest) async throws {
        try await ingest(
            subject, record("a", id: 3, qos: 1, contentOnly: true), record("a", id: 3, qos: 1, contentOnly: true),
            record("b", id: 3, qos: 1, contentOnly: true), record("a", id: 3, qos: 1, contentOnly: true))
        #expect(try await rows(subject) == ["dev/3/a", "dev/3/b", "dev/3/a"])
    }

    static func qos2(_ subject: StoreUnderTest) async throws {
        let store = subject.store
        try await ingest(subject, record("x", id: 5, qos: 2))
        #expect(try await store.load().inboundQoS2.map { "\($0.clientID)/\($0.packetID)" } == ["dev/5"])
        // While the entry exists, a re-send is a duplicate whatever its DUP flag.
        try await ingest(subject, record("x", id: 5, qos: 2), record("x", id: 5, qos: 2, dup: true))
        #expect(try await rows(subject) == ["dev/5/x"])
        // PUBREL frees the id: the next message with it is stored, identical or not.
        try await store.apply([.removeInboundQoS2(clientID: "dev", packetID: 5)])
        try await ingest(subject, record("x", id: 5, qos: 2))
        #expect(try await rows(subject) == ["dev/5/x", "dev/5/x"])
        // The row and the entry are one commit: a batch that fails leaves neither.
        await #expect(throws: (any Error).self) {
            try await store.apply([
                .ingest(record("y", id: 6, qos: 2)),
                .saveDelivery(StoreConformance.delivery("missing", 1, message: 1))
            ])
        }
        #expect(try await rows(subject) == ["dev/5/x", "dev/5/x"])
        #expect(try await store.load().inboundQoS2.map { "\($0.clientID)/\($0.packetID)" } == ["dev/5"])
    }

    /// A re-send may reach another node while the first copy is still being committed: the
    /// database, not a node's memory, decides. Many keys, so that the two transactions really
    /// interleave on a store that commits concurrently.
    static func concurrentCopies(_ subject: StoreUnderTest) async throws {
        let store = subject.store
        let keys = 1...20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for copy in 0..<2 {
                group.addTask {
                    try await store.apply(
                        keys.flatMap { id in
                            [
                                IngestConformance.record("q1-\(id)", id: UInt16(id), qos: 1, dup: true, client: "c"),
                                IngestConformance.record("q2-\(id)", id: UInt16(id), qos: 2, dup: copy == 1, client: "d")
                            ]
                        }.map { .ingest($0) })
                }
            }
            try await group.waitForAll()
        }
        // Each message once (both QoS 1 copies carry DUP: the first copy was itself a re-send).
        let expected = keys.flatMap { ["c/\($0)/q1-\($0)", "d/\($0)/q2-\($0)"] }
        #expect(try await rows(subject).sorted() == expected.sorted())
    }

    static func copiesInOneBatch(_ subject: StoreUnderTest) async throws {
        try await subject.store.apply([
            .ingest(record("a", id: 9, qos: 1)), .ingest(record("a", id: 9, qos: 1, dup: true)),
            .ingest(record("a", id: 9, qos: 1)),  // reused id, same reading: stored
            .ingest(record("z", id: 10, qos: 2)), .ingest(record("z", id: 10, qos: 2, dup: true))
        ])
        // (A reused key's second row is written in a later round of the batch, so ids within one
        // batch need not follow arrival order; received_at does.)
        #expect(try await rows(subject).sorted() == ["dev/10/z", "dev/9/a", "dev/9/a"])
    }

    /// Rows older than the cutoff by a day or more go, newer rows stay (PostgreSQL drops whole
    /// daily partitions, so rows of the cutoff's own day may stay until the next day: that is
    /// the documented granularity, not checked here).
    static func retention(_ subject: StoreUnderTest) async throws {
        let store = subject.store
        let day: Int64 = 86_400_000
        let now = noon + day
        _ = try await store.enforceRetention(before: nil, now: now)  // creates the partitions ahead (PostgreSQL)
        try await ingest(
            subject, record("old", id: nil, qos: 0, at: noon - 3 * day), record("yesterday", id: 1, qos: 1, at: noon),
            record("today", id: 2, qos: 1, at: now), record("later", id: nil, qos: 0, at: now + day))
        _ = try await store.enforceRetention(before: now - 2 * 3_600_000, now: now)
        #expect(try await rows(subject) == ["dev/2/today", "dev/-/later"])
        // The de-duplication entries of removed rows went with them: a re-send of the removed
        // message is stored again rather than silently dropped against a row that is gone.
        try await ingest(subject, record("yesterday", id: 1, qos: 1, dup: true, at: now))
        #expect(try await rows(subject) == ["dev/2/today", "dev/-/later", "dev/1/yesterday"])
    }
}
