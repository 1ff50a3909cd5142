import Logging
import MQTTCodec
import StarlingCore
import StarlingTransport

/// One configuration key: where it lives, what it means, its default, and how a value is
/// checked and applied. The table below is the single source of `generate-config`, of
/// environment variable names and of validation.
struct ConfigurationKey: Sendable {
    enum Kind: Sendable { case integer, float, boolean, string, stringList }
    let section: String
    let name: String
    let kind: Kind
    let doc: String
    let defaultLiteral: String
    let apply: @Sendable (inout StarlingConfiguration, TOMLValue) -> String?  // nil = ok, else "allowed"

    var path: String { "\(section).\(name)" }
    var environmentName: String { "STARLING_\(section.uppercased())_\(name.uppercased())" }
}

private func integer<T: FixedWidthInteger & Sendable>(
    _ section: String, _ name: String, _ range: ClosedRange<Int64>, _ doc: String, _ keyPath: WritableKeyPath<BrokerConfiguration, T>, default value: T
) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath  // key-path literals are immutable
    return ConfigurationKey(section: section, name: name, kind: .integer, doc: doc, defaultLiteral: "\(value)") { config, raw in
        guard case .integer(let v) = raw, range.contains(v), let typed = T(exactly: v) else {
            return "a whole number from \(range.lowerBound) to \(range.upperBound)"
        }
        config.broker[keyPath: keyPath] = typed
        return nil
    }
}

private func seconds(_ section: String, _ name: String, _ range: ClosedRange<Double>, _ doc: String,
                     _ keyPath: WritableKeyPath<BrokerConfiguration, Double>, default value: Double) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    return ConfigurationKey(section: section, name: name, kind: .float, doc: doc, defaultLiteral: "\(value)") { config, raw in
        let number: Double? = switch raw {
        case .integer(let v): Double(v)
        case .float(let v): v
        default: nil
        }
        guard let number, range.contains(number) else { return "a number of seconds from \(range.lowerBound) to \(range.upperBound)" }
        config.broker[keyPath: keyPath] = number
        return nil
    }
}

/// A list of listen addresses of `[mqtt]` (which may be empty: `load` checks that at least one
/// listener of any kind remains).
private func listenerList(_ name: String, _ doc: String, _ keyPath: WritableKeyPath<StarlingConfiguration, [ListenAddress]>) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    let defaults = StarlingConfiguration()[keyPath: keyPath].map { "\"\($0)\"" }.joined(separator: ", ")
    return ConfigurationKey(section: "mqtt", name: name, kind: .stringList, doc: doc, defaultLiteral: "[\(defaults)]") { config, raw in
        let allowed = "a list of \"HOST:PORT\" strings with ports 0-65535"
        guard case .array(let items) = raw else { return allowed }
        var addresses: [ListenAddress] = []
        for item in items {
            guard case .string(let s) = item, let address = ListenAddress(s) else { return allowed }
            addresses.append(address)
        }
        config[keyPath: keyPath] = addresses
        return nil
    }
}

/// A true/false key kept in `StarlingConfiguration` (not the broker's).
private func flag(_ section: String, _ name: String, _ doc: String, _ keyPath: WritableKeyPath<StarlingConfiguration, Bool>) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    return ConfigurationKey(section: section, name: name, kind: .boolean, doc: doc,
                            defaultLiteral: "\(StarlingConfiguration()[keyPath: keyPath])") { config, raw in
        guard case .boolean(let b) = raw else { return "true or false" }
        config[keyPath: keyPath] = b
        return nil
    }
}

/// A file path of `[tls]` ("" = none).
private func tlsFile(_ name: String, _ doc: String, _ keyPath: WritableKeyPath<StarlingConfiguration, String>) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    return ConfigurationKey(section: "tls", name: name, kind: .string, doc: doc, defaultLiteral: "\"\"") { config, raw in
        guard case .string(let s) = raw else { return "the path of a PEM file, or \"\"" }
        config[keyPath: keyPath] = s
        return nil
    }
}

/// A whole-number key of `[storage]`, kept in `StarlingConfiguration` (not the broker's).
private func storageInteger(_ name: String, _ range: ClosedRange<Int>, _ doc: String,
                            _ keyPath: WritableKeyPath<StarlingConfiguration, Int>) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    return ConfigurationKey(section: "storage", name: name, kind: .integer, doc: doc,
                            defaultLiteral: "\(StarlingConfiguration()[keyPath: keyPath])") { config, raw in
        guard case .integer(let v) = raw, let value = Int(exactly: v), range.contains(value) else {
            return "a whole number from \(range.lowerBound) to \(range.upperBound)"
        }
        config[keyPath: keyPath] = value
        return nil
    }
}

private func boolean(_ section: String, _ name: String, _ doc: String, _ keyPath: WritableKeyPath<BrokerConfiguration, Bool>,
                     default value: Bool) -> ConfigurationKey {
    nonisolated(unsafe) let keyPath = keyPath
    return ConfigurationKey(section: section, name: name, kind: .boolean, doc: doc, defaultLiteral: "\(value)") { config, raw in
        guard case .boolean(let v) = raw else { return "true or false" }
        config.broker[keyPath: keyPath] = v
        return nil
    }
}

private func choice<T: RawRepresentable & CaseIterable & Sendable>(
    _ section: String, _ name: String, _ doc: String, _ keyPath: WritableKeyPath<BrokerConfiguration, T>, default value: T
) -> ConfigurationKey where T.RawValue == String {
    nonisolated(unsafe) let keyPath = keyPath
    let allowed = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
    return ConfigurationKey(section: section, name: name, kind: .string, doc: "\(doc) One of \(allowed).", defaultLiteral: "\"\(value.rawValue)\"") { config, raw in
        guard case .string(let s) = raw, let v = T(rawValue: s) else { return "one of \(allowed)" }
        config.broker[keyPath: keyPath] = v
        return nil
    }
}

extension ConfigurationKey {
    static let all: [ConfigurationKey] = [
        ConfigurationKey(section: "server", name: "log_level", kind: .string,
                         doc: "Log level: \"trace\", \"debug\", \"info\", \"notice\", \"warning\", \"error\" or \"critical\".",
                         defaultLiteral: "\"info\"") { config, raw in
            guard case .string(let s) = raw, let level = Logger.Level(rawValue: s) else {
                return "one of \"trace\", \"debug\", \"info\", \"notice\", \"warning\", \"error\", \"critical\""
            }
            config.logLevel = level
            return nil
        },
        ConfigurationKey(section: "server", name: "node_id", kind: .string,
                         doc: "This node's name, stored with every ingested row (default: the host name).",
                         defaultLiteral: "\"\"") { config, raw in
            guard case .string(let s) = raw else { return "a string" }
            if !s.isEmpty { config.broker.ingest.nodeID = s }
            return nil
        },
        ConfigurationKey(section: "ingest", name: "enabled", kind: .boolean,
                         doc: "Store every published message of the ingest topics as a row of the messages table (needs a store).",
                         defaultLiteral: "true") { config, raw in
            guard case .boolean(let b) = raw else { return "true or false" }
            config.broker.ingest.enabled = b
            return nil
        },
        ConfigurationKey(section: "ingest", name: "topics", kind: .stringList,
                         doc: "Topic filters whose messages are stored; $SYS topics never are.",
                         defaultLiteral: "[\"#\"]") { config, raw in
            let allowed = "a list of valid MQTT topic filters (not $share/...)"
            guard case .array(let items) = raw else { return allowed }
            var filters: [MQTTTopicFilter] = []
            for item in items {
                guard case .string(let s) = item, let filter = try? MQTTTopicFilter(s), !filter.isShared else { return allowed }
                filters.append(filter)
            }
            config.broker.ingest.topics = filters
            return nil
        },
        ConfigurationKey(section: "ingest", name: "dedup", kind: .string,
                         doc: "\"dup_flag\": a QoS 1 message identical to the last one with its packet id is a re-send only when it carries DUP = 1 (a steady sensor's repeats are kept). \"content\": any identical repeat of a packet id is a re-send (for clients that re-send without DUP; identical readings reusing a packet id collapse).",
                         defaultLiteral: "\"dup_flag\"") { config, raw in
            guard case .string(let s) = raw, ["dup_flag", "content"].contains(s) else { return "\"dup_flag\" or \"content\"" }
            config.broker.ingest.contentDedup = s == "content"
            return nil
        },
        ConfigurationKey(section: "ingest", name: "retention", kind: .string,
                         doc: "How long rows are kept, e.g. \"30d\", \"12h\", \"90m\"; \"\" keeps them. PostgreSQL drops daily partitions; SQLite deletes in small batches.",
                         defaultLiteral: "\"\"") { config, raw in
            let allowed = "\"\" or a whole number followed by s, m, h or d, e.g. \"30d\""
            guard case .string(let s) = raw else { return allowed }
            if s.isEmpty {
                config.broker.ingest.retentionSeconds = nil
                return nil
            }
            let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            guard let unit = s.last, let factor = units[unit], let count = Int64(s.dropLast()), count > 0 else { return allowed }
            config.broker.ingest.retentionSeconds = count * factor
            return nil
        },
        ConfigurationKey(section: "storage", name: "data_dir", kind: .string,
                         doc: "Directory of the embedded SQLite store (DIR/starling.db), used when storage.postgres_url is empty.",
                         defaultLiteral: "\"./data\"") { config, raw in
            guard case .string(let s) = raw, !s.isEmpty else { return "a non-empty directory path" }
            config.dataDirectory = s
            return nil
        },
        ConfigurationKey(section: "storage", name: "postgres_url", kind: .string,
                         doc: "postgres://user:password@host:port/database. When set, PostgreSQL holds sessions and retained messages and SQLite is not used. Empty = SQLite.",
                         defaultLiteral: "\"\"") { config, raw in
            guard case .string(let s) = raw else { return "a postgres://user:password@host:port/database URL or \"\"" }
            if s.isEmpty {
                config.postgresURL = nil
                return nil
            }
            guard s.hasPrefix("postgres://") || s.hasPrefix("postgresql://"), let rest = s.split(separator: "@").last, rest.contains("/") || rest.contains(":") || !rest.isEmpty else {
                return "a postgres://user:password@host:port/database URL or \"\""
            }
            config.postgresURL = s
            return nil
        },
        ConfigurationKey(section: "storage", name: "sqlite_synchronous", kind: .string,
                         doc: "SQLite synchronous mode: \"NORMAL\" (default) survives a process crash; \"FULL\" also survives a power cut, at the cost of an fsync per commit.",
                         defaultLiteral: "\"NORMAL\"") { config, raw in
            guard case .string(let s) = raw, ["NORMAL", "FULL"].contains(s.uppercased()) else { return "\"NORMAL\" or \"FULL\"" }
            config.sqliteSynchronous = s.uppercased()
            return nil
        },
        storageInteger("commit_delay_ms", 0...100, "At light load (fewer than 64 writes waiting), milliseconds a commit may wait to gather more: one commit per millisecond instead of one per message costs the store far less, and an acknowledgement at most this much more. Writes nothing waits for (QoS 0 ingest rows) gather up to 5 ms. 0 = commit at once.",
                       \.commitDelayMilliseconds),
        storageInteger("max_pending_writes", 100...10_000_000, "Writes waiting for the store above which reading from publishing clients pauses (TCP holds their messages) until half of them are committed; a flood of QoS 0 messages with the ingest bridge cannot outrun the store without bound. Not while the store is unreachable: then QoS 0 keeps flowing.",
                       \.maxPendingWrites),
        flag("storage", "in_memory", "Keep sessions and retained messages in memory only (nothing survives a restart). For tests and benchmarks.",
             \.inMemory),
        ConfigurationKey(section: "http", name: "listen", kind: .string,
                         doc: "Address of the operations HTTP endpoints /healthz, /readyz (G5) and /metrics (Prometheus), \"HOST:PORT\" (port 0 picks a free port); \"\" serves none.",
                         defaultLiteral: "\"\"") { config, raw in
            let allowed = "\"HOST:PORT\" with a port 0-65535, or \"\" for no HTTP listener"
            guard case .string(let s) = raw else { return allowed }
            if s.isEmpty {
                config.httpListen = nil
                return nil
            }
            guard let address = ListenAddress(s) else { return allowed }
            config.httpListen = address
            return nil
        },
        ConfigurationKey(section: "http", name: "admin_token", kind: .string,
                         doc: "Bearer token of the admin API (/api/v1: list and disconnect clients; `starling ctl clients`) on http.listen; \"\" serves no admin API. At least 16 characters; prefer the environment variable to the file.",
                         defaultLiteral: "\"\"") { config, raw in
            guard case .string(let s) = raw, s.isEmpty || (s.count >= 16 && !s.contains(where: \.isWhitespace)) else {
                return "\"\" or a token of at least 16 characters without spaces"
            }
            config.adminToken = s
            return nil
        },
        ConfigurationKey(section: "auth", name: "allow_anonymous", kind: .string,
                         doc: "Who may connect without a user name: \"loopback\" (on listeners bound to 127.0.0.0/8 or ::1 only), \"true\" (everyone) or \"false\" (no one). Users are managed with `starling ctl users`; with none, user names are not checked and every client counts as anonymous.",
                         defaultLiteral: "\"loopback\"") { config, raw in
            guard case .string(let s) = raw, let policy = AnonymousPolicy(rawValue: s) else { return "one of \"loopback\", \"true\", \"false\"" }
            config.allowAnonymous = policy
            return nil
        },
        tlsFile("certificate", "PEM file of the TLS listeners' certificate chain (server certificate first).", \.tlsCertificate),
        tlsFile("private_key", "PEM file of the private key of tls.certificate.", \.tlsPrivateKey),
        tlsFile("client_ca", "PEM file of the certificate authorities whose client certificates are accepted: when set, TLS clients must present one (mutual TLS); \"\" asks for none.",
                \.tlsClientCA),
        listenerList("listeners", "Addresses to accept MQTT on, \"HOST:PORT\" (\"[::]:1883\" for IPv6; port 0 picks a free port). The default exposes nothing beyond this machine.",
                     \.listeners),
        listenerList("tls_listeners", "Addresses to accept MQTT over TLS on (usually port 8883); they need tls.certificate and tls.private_key.",
                     \.tlsListeners),
        listenerList("ws_listeners", "Addresses to accept MQTT over WebSocket on (HTTP upgrade at mqtt.ws_path, subprotocol mqtt; usually port 8083 or 80 behind an HTTP load balancer).",
                     \.webSocketListeners),
        listenerList("wss_listeners", "Addresses to accept MQTT over secure WebSocket on (usually port 8084 or 443); they need tls.certificate and tls.private_key.",
                     \.secureWebSocketListeners),
        flag("mqtt", "proxy_protocol", "Every connection on the MQTT listeners starts with a PROXY protocol header (v1 or v2, as HAProxy's send-proxy-v2 or an AWS NLB send): the broker then logs and authorizes the client's address. Connections without one are closed, so only enable it behind such a balancer.",
             \.proxyProtocol),
        ConfigurationKey(section: "mqtt", name: "ws_path", kind: .string, doc: "The HTTP path of the WebSocket listeners.",
                         defaultLiteral: "\"/mqtt\"") { config, raw in
            guard case .string(let s) = raw, s.hasPrefix("/"), !s.contains(where: { $0 == " " || $0 == "?" || $0 == "#" }) else {
                return "a path starting with \"/\", without spaces, \"?\" or \"#\""
            }
            config.webSocketPath = s
            return nil
        },
        integer("mqtt", "max_keepalive", 0...65535,
                "Largest keep alive in seconds (0 = no maximum). A 5.0 client asking for more, or for 0, gets this as Server Keep Alive; a 3.x client is refused with CONNACK 0x02.",
                \.maxKeepAlive, default: 0),
        seconds("mqtt", "connect_timeout", 0.1...3600, "Seconds a new connection has to send CONNECT before it is closed.", \.connectTimeout, default: 10),
        integer("mqtt", "max_packet_size", 16...268_435_460,
                "Largest packet accepted in bytes, fixed header included; a larger declared size is refused (0x95) before any of it is buffered.",
                \.maxPacketSize, default: 1 << 20),
        integer("mqtt", "max_connections", 1...10_000_000, "Most simultaneous client connections; more are refused (0x97 / 3.x 0x03).", \.maxConnections, default: 100_000),
        integer("mqtt", "max_inflight", 1...65535,
                "Outbound QoS 1/2 messages in flight per session, also capped by the client's Receive Maximum.", \.maxInflight, default: 32),
        integer("mqtt", "receive_maximum", 1...65535,
                "Inbound QoS 2 messages a client may leave awaiting PUBREL (announced as Receive Maximum; exceeding it is DISCONNECT 0x93).",
                \.receiveMaximum, default: 256),
        integer("mqtt", "max_queued_messages", 0...100_000_000,
                "Messages queued per session beyond the in-flight window (offline sessions, slow clients).", \.maxQueuedMessages, default: 10_000),
        choice("mqtt", "queue_full_policy",
               "When a queue is full, its oldest QoS 0 message is dropped first; if there is none, \"drop_new\" refuses the new message and \"drop_oldest\" drops the oldest. Every drop is counted in $SYS/broker/messages/dropped and logged.",
               \.queueFullPolicy, default: .dropNew),
        integer("mqtt", "topic_alias_maximum", 0...65535, "Topic aliases a 5.0 client may use towards the broker (0 = none).", \.topicAliasMaximum, default: 64),
        integer("mqtt", "max_topic_levels", 1...1024, "Most levels in a topic name or filter.", \.maxTopicLevels, default: 32),
        integer("mqtt", "max_topic_length", 1...65535, "Longest topic name or filter in bytes.", \.maxTopicLength, default: 1024),
        integer("mqtt", "max_subscriptions_per_client", 1...10_000_000, "Most subscriptions per client (more get 0x97 / 3.x 0x80).", \.maxSubscriptionsPerClient, default: 1_000),
        integer("mqtt", "max_client_id_length", 1...65535, "Longest client identifier in bytes (longer ones get 0x85 / 3.x 0x02).", \.maxClientIDLength, default: 256),
        ConfigurationKey(section: "mqtt", name: "maximum_qos", kind: .integer,
                         doc: "Highest QoS accepted from publishers and granted to subscribers (0, 1 or 2).", defaultLiteral: "2") { config, raw in
            guard case .integer(let v) = raw, let qos = MQTTQoS(rawValue: UInt8(clamping: v)), v >= 0 else { return "0, 1 or 2" }
            config.broker.maximumQoS = qos
            return nil
        },
        boolean("mqtt", "retain_available", "Whether retained messages are supported.", \.retainAvailable, default: true),
        choice("mqtt", "shared_subscription_strategy", "How one member of a $share group is chosen for each message.", \.sharedStrategy, default: .roundRobin),
        seconds("mqtt", "sys_interval", 0...86_400, "Seconds between $SYS/broker/... updates (0 = off).", \.sysInterval, default: 10),
        integer("mqtt", "max_session_expiry", 0...4_294_967_295,
                "Largest Session Expiry Interval granted in seconds (4294967295 = sessions may never expire).", \.maxSessionExpiry, default: .max),
        boolean("mqtt", "validate_utf8_payloads", "Refuse payloads marked UTF-8 (Payload Format Indicator 1) that are not (0x99).", \.validateUTF8Payloads, default: true),
        boolean("mqtt", "allow_empty_client_id", "Let 3.x clients with Clean Session 1 connect with an empty client id and assign one (5.0 always may).", \.allowEmptyClientID, default: true),
    ]
}
