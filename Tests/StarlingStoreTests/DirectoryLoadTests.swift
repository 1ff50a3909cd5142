import MQTTCodec
import StarlingCore
import StarlingPostgres
import Testing

/// A node's starting session directory, read from the real PostgreSQL: the other nodes' stored
/// sessions (and those no node holds) with every subscription and its options; its own are not
/// in it.
@Suite("Session directory load (PostgreSQL)", .enabled(if: TestPostgres.isConfigured))
struct DirectoryLoadTests {
    static func subscription(_ filter: String, qos: MQTTQoS, noLocal: Bool, rap: Bool, handling: UInt8, id: Int?) -> Subscription {
        Subscription(
            MQTTSubscription(
                filter: try! MQTTTopicFilter(filter), qos: qos, noLocal: noLocal, retainAsPublished: rap,
                retainHandling: .init(rawValue: handling)!), identifier: id)
    }

    @Test("every subscription with its QoS, No Local, Retain As Published, Retain Handling and identifier; sessions without any too")
    func loadsOptions() async throws {
        try await TestPostgres.withStore { _, client in
            let n2 = PostgresStore(client: client, logger: TestPostgres.logger, ownerNode: "n2")
            let n1 = PostgresStore(client: client, logger: TestPostgres.logger, ownerNode: "n1")
            let subscriptions = [
                Self.subscription("a/+", qos: .exactlyOnce, noLocal: true, rap: false, handling: 2, id: 268_435_455),
                Self.subscription("$share/g/b/#", qos: .atLeastOnce, noLocal: false, rap: true, handling: 1, id: nil),
                Self.subscription("c", qos: .atMostOnce, noLocal: false, rap: false, handling: 0, id: 1)
            ]
            var operations: [StoreOperation] = [
                .saveSession(StoredSession(clientID: "held-by-n2", version: .v5, expiryInterval: 60, connected: true)),
                .saveSession(StoredSession(clientID: "quiet", version: .v3_1_1, expiryInterval: .max, connected: false))
            ]
            operations += subscriptions.map { .saveSubscription(StoredSubscription(clientID: "held-by-n2", subscription: $0)) }
            try await n2.apply(operations)
            try await n1.apply([.saveSession(StoredSession(clientID: "mine", version: .v5, expiryInterval: 60, connected: true))])

            let directory = try await n1.ownership.loadDirectory()
            let byID = Dictionary(uniqueKeysWithValues: directory.map { ($0.clientID, $0) })
            #expect(byID.keys.sorted() == ["held-by-n2", "quiet"])
            #expect(byID["held-by-n2"]?.owner == "n2")
            let loaded = (byID["held-by-n2"]?.subscriptions ?? []).sorted { $0.filter.raw < $1.filter.raw }
            #expect(loaded == subscriptions.sorted { $0.filter.raw < $1.filter.raw })
            #expect(byID["quiet"]?.subscriptions == [])
        }
    }
}
