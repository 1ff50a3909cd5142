import Foundation
import Logging
import NIOCore
import PostgresNIO
import StarlingCore
import StarlingPostgres
import StarlingSQLite

/// The raw batched write rate of a store for the rows the broker writes: what durable QoS 1
/// fan-in (a payload and a delivery row per message) and the ingest bridge (a `messages` row and
/// its `ingest_dedup` entry) cost the database with the best batching, without the broker.
enum StoreBenchmarks {
    static let batch = 1000
    static let total = 100_000

    static func run(_ store: any PersistentStore) async throws {
        try await store.migrate()
        try await store.apply([.saveSession(StoredSession(clientID: "bench-sub", version: .v5, expiryInterval: 3600, connected: false))])
        // 64 bytes, the payload size of bench/durable's publishers.
        let payload = ByteBuffer(string: jsonPayload(0))
        var id = Int64(Date().timeIntervalSince1970 * 1000) * 1000

        // 1. Queue rows: a payload stored once and a delivery row for one stored session.
        var start = ContinuousClock.now
        var sequence: Int64 = 0
        for _ in 0..<(total / batch) {
            var operations: [StoreOperation] = []
            operations.reserveCapacity(batch * 2)
            for _ in 0..<batch {
                id += 1
                sequence += 1
                operations.append(
                    .saveMessage(
                        StoredMessage(
                            id: id, topic: "bench/1", payload: payload, qos: .atLeastOnce, retain: false,
                            properties: [], expiresAt: nil, publisher: "bench-pub")))
                operations.append(
                    .saveDelivery(
                        StoredDelivery(
                            clientID: "bench-sub", sequence: sequence, messageID: id, qos: .atLeastOnce,
                            retain: false, subscriptionIdentifiers: [], shareGroup: nil, state: .queued, packetID: nil)))
            }
            try await store.apply(operations)
        }
        report("\(store.name) raw queue rows (payload + delivery), batches of \(batch)", start: start)

        // 2. Ingest rows with QoS 1 de-duplication (each packet id of 10 clients reused in turn).
        start = ContinuousClock.now
        for round in 0..<(total / batch) {
            try await store.apply(ingestBatch(round).map { .ingest($0) })
        }
        report("\(store.name) raw ingest rows with de-duplication, batches of \(batch)", start: start)
    }

    /// Batch `round` of the ingest figure: QoS 1 first sends of 10 clients, distinct 64-byte JSON
    /// payloads, packet ids reused in turn.
    static func ingestBatch(_ round: Int) -> [IngestRecord] {
        let wall = Int64(Date().timeIntervalSince1970 * 1000)
        return (round * batch + 1...(round + 1) * batch).map { n in
            IngestRecord(
                receivedAt: wall + Int64(n / 100), clientID: "bench-\(n % 10)", username: nil,
                packetID: UInt16(truncatingIfNeeded: n / 10 % 65535 + 1),
                topic: "bench/\(n % 10)", payload: ByteBuffer(string: jsonPayload(n)), qos: 1, retain: false, contentType: nil,
                userProperties: [], contentHash: Array(repeating: UInt8(truncatingIfNeeded: n), count: 32) + [], nodeID: "bench",
                dedup: .qos1(dup: false, contentOnly: false))
        }
    }

    /// A distinct 64-byte JSON object, the shape of `starling-bench pub --json-payload --size 64`.
    static func jsonPayload(_ n: Int) -> String {
        #"{"n":""# + String(format: "%016llx", n) + #"","p":""# + String(repeating: "x", count: 33) + #""}"#
    }

    static func report(_ name: String, start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("\(name.padding(toLength: 64, withPad: " ", startingAt: 0)) \(String(format: "%10.0f", Double(total) / seconds)) rows/s")
    }

    static func sqlite(directory: String) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: (directory as NSString).appendingPathComponent("raw-\(UUID().uuidString).db"))
        try await run(store)
    }

    static func postgres(url: String) async throws {
        guard let configuration = PostgresStore.configuration(url: url) else {
            print("not a postgres:// URL: \(url)")
            exit(2)
        }
        let client = PostgresClient(configuration: configuration)
        let logger = Logger(label: "microbench")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            try await run(PostgresStore(client: client, logger: logger, schema: PostgresStore.schema(url: url)))
            try await PostgresCopyBenchmark.run(client: client, logger: logger)
            try await PostgresCopyBenchmark.ingestCeiling(client: client, logger: logger)
            group.cancelAll()
        }
    }
}
