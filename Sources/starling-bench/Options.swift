import ArgumentParser
import MQTTCodec
import NIOCore
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `--mqtt-version 3.1.1|5`.
struct VersionArgument: ExpressibleByArgument, Sendable {
    var version: MQTTProtocolVersion

    init(_ version: MQTTProtocolVersion) { self.version = version }

    init?(argument: String) {
        switch argument {
        case "3.1.1", "311", "4": version = .v3_1_1
        case "5", "5.0", "50": version = .v5
        default: return nil
        }
    }

    var defaultValueDescription: String { version == .v5 ? "5" : "3.1.1" }
    static var allValueStrings: [String] { ["3.1.1", "5"] }
}

/// Options shared by the client subcommands.
struct CommonOptions: ParsableArguments {
    @Option(help: "Broker host name or address.")
    var host = "127.0.0.1"

    @Option(help: "Broker port.")
    var port = 1883

    @Option(help: "MQTT protocol version: 3.1.1 or 5.")
    var mqttVersion = VersionArgument(.v3_1_1)

    @Option(help: "User name sent in CONNECT.")
    var username: String?

    @Option(help: "Password sent in CONNECT (3.1.1 requires --username with it).")
    var password: String?

    @Option(help: "Client identifier prefix (default: sb<pid>); ids are PREFIX-<role><index>.")
    var clientPrefix: String?

    @Option(help: "Keep alive in seconds; idle clients send PINGREQ well within it. 0 turns it off.")
    var keepAlive = 60

    @Option(
        help:
            "Seconds to run (the publishing or receiving window; for conn, the hold after connecting). 0 = until interrupted or --count-limit."
    )
    var duration = 10.0

    @Option(help: "Stop after this many messages (pub/pubsub: published in all, split among publishers; sub: received). 0 = no limit.")
    var countLimit = 0

    @Option(help: "Event loop threads.")
    var threads = 1

    @Flag(help: "Print the final summary as one JSON object on standard output.")
    var json = false

    func validate() throws {
        guard !host.isEmpty else { throw ValidationError("--host must not be empty") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535, not \(port)") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be 1 to 256, not \(threads)") }
        guard duration >= 0, duration.isFinite else { throw ValidationError("--duration must be 0 or more seconds") }
        guard countLimit >= 0 else { throw ValidationError("--count-limit must be 0 or more") }
        guard (0...65535).contains(keepAlive) else { throw ValidationError("--keep-alive must be 0 to 65535 seconds") }
        if password != nil && username == nil && mqttVersion.version < .v5 {
            throw ValidationError("MQTT 3.1.1 does not allow --password without --username")
        }
        if let clientPrefix, clientPrefix.isEmpty { throw ValidationError("--client-prefix must not be empty") }
    }

    var prefix: String { clientPrefix ?? "sb\(getpid())" }

    func runConfig(qos: Int = 0, subscribeQoS: Int = 0, size: Int = 0, rate: Double = 0, inflight: Int = 20) throws -> RunConfig {
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw ValidationError("cannot resolve --host \(host): \(error)")
        }
        return RunConfig(
            address: address, version: mqttVersion.version, username: username, password: password,
            keepAlive: UInt16(keepAlive), qos: MQTTQoS(rawValue: UInt8(qos))!,
            subscribeQoS: MQTTQoS(rawValue: UInt8(subscribeQoS))!, payloadSize: size, rate: rate, inflight: inflight)
    }
}

func validateQoS(_ qos: Int, _ name: String = "--qos") throws {
    guard (0...2).contains(qos) else { throw ValidationError("\(name) must be 0, 1 or 2, not \(qos)") }
}

func validateClients(_ n: Int, _ name: String) throws {
    guard (1...1_000_000).contains(n) else { throw ValidationError("\(name) must be 1 to 1000000, not \(n)") }
}

func validateRate(_ rate: Double, _ name: String = "--rate") throws {
    guard rate >= 0, rate.isFinite else { throw ValidationError("\(name) must be 0 or more") }
}

func validateInflight(_ n: Int) throws {
    guard (1...65535).contains(n) else { throw ValidationError("--inflight must be 1 to 65535, not \(n)") }
}

func validateSize(_ size: Int, minimum: Int) throws {
    guard size >= minimum, size <= 64 << 20 else {
        throw ValidationError(
            minimum > 0
                ? "--size must be \(minimum) to \(64 << 20) bytes (the payload carries a \(minimum)-byte send time and sequence header)"
                : "--size must be 0 to \(64 << 20) bytes")
    }
}

/// `pattern` with `%i` replaced by the 1-based client number.
func expand(_ pattern: String, _ index: Int) -> String {
    pattern.contains("%i") ? pattern.replacing("%i", with: String(index + 1)) : pattern
}

func validateTopicPattern(_ pattern: String, _ name: String = "--topic") throws {
    for i in [0, 1] {
        do {
            try MQTTTopic.validateName(expand(pattern, i))
        } catch {
            throw ValidationError("\(name) \"\(pattern)\" is not a valid topic name: \(error)")
        }
    }
}

func validateFilterPattern(_ pattern: String, _ name: String = "--topic") throws {
    for i in [0, 1] {
        do {
            _ = try MQTTTopicFilter(expand(pattern, i))
        } catch {
            throw ValidationError("\(name) \"\(pattern)\" is not a valid topic filter: \(error)")
        }
    }
}
