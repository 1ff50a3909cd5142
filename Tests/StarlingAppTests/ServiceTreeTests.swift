import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import StarlingApp

/// The node's tree of services (docs/architecture.md "The process"): the group stops them in the
/// reverse order of the list, so each must come after every service it depends on.
@Suite("The service tree")
struct ServiceTreeTests {
    static func names(_ overrides: StarlingConfiguration.Overrides) async throws -> [String] {
        let configuration = try StarlingConfiguration.load(toml: nil, overrides: overrides)
        let node = StarlingNode(configuration: configuration, logger: Logger(label: "test"))
        let setup = configuration.inMemory ? nil : try StoreSetup.open(configuration, logger: Logger(label: "test"))
        let services = node.services(setup: setup, tls: nil)
        // Nothing runs: the event loop the services were given is shut down here.
        for case let loop as EventLoopService in services {
            try await loop.group.shutdownGracefully()
            try await loop.hashing.shutdownGracefully()
        }
        return services.map { String(describing: type(of: $0)) }
    }

    @Test("a cluster node on PostgreSQL: operations, client, loop, replay, membership, sweeper, broker, maintenance")
    func clusterNode() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tree-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let names = try await Self.names(
            .init(
                listeners: ["127.0.0.1:0"], dataDirectory: directory, postgresURL: "postgres://u:p@127.0.0.1:1/db",
                httpListen: "127.0.0.1:0", clusterListen: "127.0.0.1:0", nodeID: "n1"))
        #expect(
            names == [
                "OpsServer", "PostgresClientService", "EventLoopService", "SpoolReplayService", "ClusterService", "SweeperService",
                "BrokerService", "StoreMaintenanceService"
            ])
    }

    @Test("a single node on SQLite without operations HTTP: loop, broker, maintenance")
    func singleNode() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tree-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let names = try await Self.names(.init(listeners: ["127.0.0.1:0"], dataDirectory: directory))
        #expect(names == ["EventLoopService", "BrokerService", "StoreMaintenanceService"])
    }
}
