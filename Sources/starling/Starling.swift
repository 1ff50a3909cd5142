import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import Logging
import StarlingApp
import StarlingCore
import StarlingOps

/// `starling`: the broker. With no arguments it serves with defaults (127.0.0.1:1883 only).
@main
struct Starling: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling",
        abstract: "A clustered MQTT broker (3.1, 3.1.1, 5.0).",
        version: StarlingNode.version,
        subcommands: [Serve.self, Migrate.self, Ctl.self, GenerateConfig.self],
        defaultSubcommand: Serve.self
    )

    /// Runs the command line, mapping every usage or configuration error to exit status 2
    /// with a message naming the problem.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("starling: \(error)\n".utf8))
            Foundation.exit(2)
        } catch let error as StartupError {
            FileHandle.standardError.write(Data("starling: \(error)\n".utf8))
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(code == .failure ? 1 : 2)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker (the default command).")

    @OptionGroup var source: ConfigurationSource

    @Option(name: .long, help: "Listen for MQTT on HOST:PORT (repeatable; port 0 picks a free port). Overrides mqtt.listeners.")
    var mqtt: [String] = []

    @Option(name: .long, help: "Serve /healthz, /readyz and /metrics on HOST:PORT (port 0 picks a free port). Overrides http.listen.")
    var http: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(
        name: .long,
        help: "Join a cluster: the node-to-node listener HOST:PORT (port 0 picks a free port). Needs --postgres. Overrides cluster.listen.")
    var cluster: String?

    @Option(name: .long, help: "This node's id, unique among live nodes (default: the host name). Overrides server.node_id.")
    var nodeID: String?

    func run() async throws {
        let configuration = try source.load(listeners: mqtt, logLevel: logLevel, httpListen: http, clusterListen: cluster, nodeID: nodeID)

        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Lines on standard output that scripts and tests wait for (with the real ports).
        let node = StarlingNode(configuration: configuration, logger: Logger(label: "starling")) { listeners in
            for (scheme, address) in listeners { print("starling: listening \(scheme) \(address)") }
            fflush(nil)
        }
        try await node.run()
    }
}

/// Where the configuration comes from: the TOML file, the environment, and the store flags that
/// `serve` and `migrate` share.
struct ConfigurationSource: ParsableArguments {
    @Option(name: .long, help: "TOML configuration file (see `starling generate-config`).")
    var config: String?

    @Option(
        name: .long,
        help:
            "Directory of the embedded SQLite store, or with --postgres of the spool used while PostgreSQL is unreachable (default ./data). Overrides storage.data_dir."
    )
    var dataDir: String?

    @Option(
        name: .long,
        help:
            "postgres://user:password@host:port/database: keep everything in PostgreSQL (spooled to --data-dir while it is unreachable). Overrides storage.postgres_url."
    )
    var postgres: String?

    func load(
        listeners: [String] = [], logLevel: String? = nil, httpListen: String? = nil, clusterListen: String? = nil,
        nodeID: String? = nil
    ) throws -> StarlingConfiguration {
        var text: String?
        if let config {
            guard let data = FileManager.default.contents(atPath: config), let string = String(data: data, encoding: .utf8) else {
                throw ConfigurationError(key: "--config", value: config, allowed: "a readable UTF-8 TOML file", source: "--config")
            }
            text = string
        }
        return try StarlingConfiguration.load(
            toml: text, fileName: config ?? "configuration file",
            environment: ProcessInfo.processInfo.environment,
            overrides: .init(
                listeners: listeners, logLevel: logLevel, dataDirectory: dataDir, postgresURL: postgres, httpListen: httpListen,
                clusterListen: clusterListen, nodeID: nodeID))
    }
}

/// `starling ctl`: administration of what the store holds.
struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Administer the broker: users (in the store), clients (through the admin API).",
        subcommands: [Users.self, Clients.self, Cluster.self])

    /// `starling ctl cluster`: the membership of a running node's cluster, through its admin API.
    struct Cluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The cluster, as a running node sees it.", subcommands: [Nodes.self])

        struct Nodes: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "One line per node: id, state (alive, draining, dead, left), MQTT and cluster addresses, clients, lease age; then this node's links."
            )
            @OptionGroup var api: Clients.API

            func run() async throws {
                let summary = try JSONDecoder().decode(ClusterSummary.self, from: try await api.call("GET", "/api/v1/nodes"))
                for node in summary.nodes {
                    print(
                        [
                            node.nodeID + (node.nodeID == summary.node ? "*" : ""), node.status, "mqtt=\(node.mqttAddress)",
                            "cluster=\(node.clusterAddress)", "clients=\(node.clients)",
                            "lease_age=\(String(format: "%.1f", Double(node.leaseAgeMilliseconds) / 1000))s"
                        ].joined(separator: "\t"))
                }
                for link in summary.links {
                    print(
                        ["link", link.direction.rawValue, link.peer, link.address, link.up ? "up" : "down: \(link.detail ?? "")"].joined(
                            separator: "\t"))
                }
            }
        }
    }

    /// `starling ctl clients`: the admin API of a running broker (`http.listen`, `http.admin_token`).
    struct Clients: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clients of a running broker, through its admin API.",
            subcommands: [List.self, Show.self, Disconnect.self])

        struct API: ParsableArguments {
            @Option(help: "The broker's operations address (http.listen).") var url = "http://127.0.0.1:8080"
            @Option(help: "The admin token (http.admin_token); default: STARLING_HTTP_ADMIN_TOKEN.")
            var token = ProcessInfo.processInfo.environment["STARLING_HTTP_ADMIN_TOKEN"] ?? ""

            /// The response body of `method path`; a clear error for anything but 2xx.
            func call(_ method: String, _ path: String) async throws -> Data {
                guard let url = URL(string: url + path) else { throw ValidationError("--url \(self.url) is not a URL") }
                var request = URLRequest(url: url)
                request.httpMethod = method
                request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
                let (data, response) = try await URLSession.shared.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                guard (200..<300).contains(status) else {
                    let message =
                        (try? JSONDecoder().decode([String: String].self, from: data))?["error"] ?? String(decoding: data, as: UTF8.self)
                    throw ValidationError("\(method) \(url): \(status) \(message)")
                }
                return data
            }

            static func path(_ clientID: String) -> String {
                "/api/v1/clients/" + (clientID.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? clientID)
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "One line per session: id, state, protocol, address, subscriptions, in flight, queued.")
            @OptionGroup var api: API

            func run() async throws {
                struct Body: Decodable { var clients: [ClientSummary] }
                for c in try JSONDecoder().decode(Body.self, from: try await api.call("GET", "/api/v1/clients")).clients {
                    print(
                        [
                            c.clientID, c.connected ? "connected" : "offline", c.protocolVersion, c.remoteAddress ?? "-",
                            "subscriptions=\(c.subscriptions.count)", "inflight=\(c.inflight)", "queued=\(c.queued)"
                        ].joined(separator: "\t"))
                }
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One session, as JSON.")
            @OptionGroup var api: API
            @Argument(help: "The client id.") var clientID: String

            func run() async throws {
                print(String(decoding: try await api.call("GET", API.path(clientID)), as: UTF8.self), terminator: "")
            }
        }

        struct Disconnect: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Disconnect a client (5.0: DISCONNECT 0x98 Administrative action).")
            @OptionGroup var api: API
            @Argument(help: "The client id.") var clientID: String
            @Flag(help: "End its session too (subscriptions and queued messages are discarded).") var endSession = false

            func run() async throws {
                _ = try await api.call("DELETE", API.path(clientID) + (endSession ? "?end_session=true" : ""))
                print("starling: \(clientID) disconnected\(endSession ? ", session ended" : "")")
            }
        }
    }

    struct Users: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Password users, kept in the store (every node reads them; a running broker picks changes up within seconds).",
            subcommands: [Add.self, Delete.self, List.self])

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a user or set its password (read from standard input unless --password is given).")
            @OptionGroup var source: ConfigurationSource
            @Argument(help: "The user name.") var username: String
            @Option(help: "The password (visible to other users of this machine in the process list; prefer standard input).")
            var password: String?
            @Option(
                help:
                    "PBKDF2 rounds (default 210,000, OWASP's for passwords people choose: about 0.14 s per check; devices with random secrets of 128 bits or more can use as few as 1,000)."
            )
            var rounds: Int = 210_000

            func run() async throws {
                guard let secret = password ?? readLine(strippingNewline: true) else {
                    throw ValidationError("no password: give --password or a line on standard input")
                }
                let store = try await UserAdministration.add(
                    username, password: secret, rounds: rounds, configuration: try source.load(),
                    logger: Logger(label: "starling.ctl"))
                print("starling: user \(username) saved in \(store)")
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a user.")
            @OptionGroup var source: ConfigurationSource
            @Argument(help: "The user name.") var username: String

            func run() async throws {
                guard try await UserAdministration.delete(username, configuration: try source.load(), logger: Logger(label: "starling.ctl"))
                else {
                    throw ValidationError("there is no user \(username)")
                }
                print("starling: user \(username) deleted")
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the user names.")
            @OptionGroup var source: ConfigurationSource

            func run() async throws {
                for name in try await UserAdministration.list(configuration: try source.load(), logger: Logger(label: "starling.ctl")) {
                    print(name)
                }
            }
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the store's pending migrations and exit.")

    @OptionGroup var source: ConfigurationSource

    func run() async throws {
        let description = try await StarlingNode.migrate(try source.load(), logger: Logger(label: "starling.migrate"))
        print("starling: migrations applied to \(description)")
    }
}

struct GenerateConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-config", abstract: "Print the full default configuration, every key documented.")

    func run() {
        print(StarlingConfiguration.defaultDocument())
    }
}
