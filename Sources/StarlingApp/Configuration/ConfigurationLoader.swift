import Logging
import MQTTCodec
import StarlingCore
import StarlingTransport

extension StarlingConfiguration {
    /// What flags override.
    public struct Overrides: Sendable {
        public var listeners: [String] = []
        public var logLevel: String?
        public var dataDirectory: String?
        public var postgresURL: String?
        public var httpListen: String?
        public var clusterListen: String?
        public var nodeID: String?
        public init(
            listeners: [String] = [], logLevel: String? = nil, dataDirectory: String? = nil, postgresURL: String? = nil,
            httpListen: String? = nil, clusterListen: String? = nil, nodeID: String? = nil
        ) {
            (self.clusterListen, self.nodeID, self.listeners, self.httpListen) = (clusterListen, nodeID, listeners, httpListen)
            (self.logLevel, self.dataDirectory, self.postgresURL) = (logLevel, dataDirectory, postgresURL)
        }
    }

    /// Builds the configuration: defaults, then the TOML text (if any), then `STARLING_*`
    /// variables of `environment`, then `overrides`.
    public static func load(
        toml: String?,
        fileName: String = "configuration file",
        environment: [String: String] = [:],
        overrides: Overrides = .init()
    ) throws -> StarlingConfiguration {
        var config = StarlingConfiguration()
        if let toml { try applyTOML(toml, fileName: fileName, to: &config) }
        try applyEnvironment(environment, to: &config)
        try applyOverrides(overrides, to: &config)
        try config.checkListeners()
        try config.checkCluster()
        return config
    }

    private static let keysByPath = Dictionary(uniqueKeysWithValues: ConfigurationKey.all.map { ($0.path, $0) })
    private static let sections = Set(ConfigurationKey.all.map(\.section))

    /// The file: every section and key must be known.
    private static func applyTOML(_ toml: String, fileName: String, to config: inout StarlingConfiguration) throws {
        let document: TOMLTable
        do {
            document = try TOML.parse(toml)
        } catch {
            throw ConfigurationError(key: "(syntax)", value: "\(fileName) \(error)", allowed: "a valid TOML document", source: fileName)
        }
        for (sectionName, sectionValue) in document {
            if sectionName == "authorization" {
                try applyAuthorization(sectionValue, to: &config, source: fileName)
                continue
            }
            guard sections.contains(sectionName), case .table(let table) = sectionValue else {
                throw ConfigurationError(
                    key: sectionName, value: describe(sectionValue),
                    allowed: "the sections \((sections.sorted() + ["authorization"]).map { "[\($0)]" }.joined(separator: ", "))",
                    source: fileName)
            }
            for (name, value) in table {
                guard let key = keysByPath["\(sectionName).\(name)"] else {
                    let known = ConfigurationKey.all.filter { $0.section == sectionName }.map(\.name).joined(separator: ", ")
                    throw ConfigurationError(
                        key: "\(sectionName).\(name)", value: describe(value), allowed: "a known key of [\(sectionName)]: \(known)",
                        source: fileName)
                }
                try apply(key, value, to: &config, source: fileName)
            }
        }
    }

    /// `STARLING_<SECTION>_<KEY>` variables.
    private static func applyEnvironment(_ environment: [String: String], to config: inout StarlingConfiguration) throws {
        for key in ConfigurationKey.all {
            guard let text = environment[key.environmentName] else { continue }
            let source = "environment variable \(key.environmentName)"
            guard let value = parseEnvironment(text, as: key.kind) else {
                throw ConfigurationError(key: key.path, value: text, allowed: allowedText(for: key), source: source)
            }
            try apply(key, value, to: &config, source: source)
        }
        // A variable of a known section that names no key is a mistake worth stopping for;
        // other STARLING_* variables (of tools, tests) are not ours to judge.
        let sectionPrefixes = sections.map { "STARLING_\($0.uppercased())_" }
        let unknownEnvironment = environment.keys.filter { name in
            sectionPrefixes.contains { name.hasPrefix($0) } && !ConfigurationKey.all.map(\.environmentName).contains(name)
        }
        if let unknown = unknownEnvironment.sorted().first {
            throw ConfigurationError(
                key: unknown, value: environment[unknown] ?? "",
                allowed: "STARLING_<SECTION>_<KEY> of a known key, e.g. STARLING_MQTT_MAX_KEEPALIVE",
                source: "environment variable \(unknown)")
        }
    }

    /// The command line's flags, last.
    private static func applyOverrides(_ overrides: Overrides, to config: inout StarlingConfiguration) throws {
        let flags: [(key: String, value: TOMLValue?, flag: String)] = [
            ("mqtt.listeners", overrides.listeners.isEmpty ? nil : .array(overrides.listeners.map { .string($0) }), "--mqtt"),
            ("http.listen", overrides.httpListen.map { .string($0) }, "--http"),
            ("server.log_level", overrides.logLevel.map { .string($0) }, "--log-level"),
            ("storage.data_dir", overrides.dataDirectory.map { .string($0) }, "--data-dir"),
            ("storage.postgres_url", overrides.postgresURL.map { .string($0) }, "--postgres"),
            ("cluster.listen", overrides.clusterListen.map { .string($0) }, "--cluster"),
            ("server.node_id", overrides.nodeID.map { .string($0) }, "--node-id")
        ]
        for (path, value, flag) in flags {
            guard let value else { continue }
            try apply(keysByPath[path]!, value, to: &config, source: flag)
        }
    }

    /// A cluster shares PostgreSQL, and a listener others can reach needs the secret.
    func checkCluster() throws {
        guard let listen = clusterListen else { return }
        if postgresURL == nil {
            throw ConfigurationError(
                key: "cluster.listen", value: "\"\(listen)\"",
                allowed:
                    "a cluster needs PostgreSQL shared by its nodes: set storage.postgres_url (--postgres) too, or leave cluster.listen empty",
                source: "the configuration")
        }
        if clusterTLS && (tlsCertificate.isEmpty || tlsPrivateKey.isEmpty) {
            throw ConfigurationError(
                key: "cluster.tls", value: "true", allowed: "false, or true with tls.certificate and tls.private_key set",
                source: "the configuration")
        }
        if !listen.isLoopback && clusterSecret.isEmpty {
            throw ConfigurationError(
                key: "cluster.secret", value: "\"\"",
                allowed:
                    "a secret of at least 16 bytes (STARLING_CLUSTER_SECRET) when cluster.listen (\(listen)) is not a loopback address",
                source: "the configuration")
        }
    }

    /// What no single key can check: some listener exists, and TLS listeners have their files.
    func checkListeners() throws {
        if listeners.isEmpty && tlsListeners.isEmpty && webSocketListeners.isEmpty && secureWebSocketListeners.isEmpty {
            throw ConfigurationError(
                key: "mqtt.listeners", value: "[]",
                allowed: "at least one listener in mqtt.listeners, tls_listeners, ws_listeners or wss_listeners",
                source: "the configuration")
        }
        guard !tlsListeners.isEmpty || !secureWebSocketListeners.isEmpty else { return }
        for (key, value) in [("tls.certificate", tlsCertificate), ("tls.private_key", tlsPrivateKey)] where value.isEmpty {
            throw ConfigurationError(
                key: key, value: "\"\"",
                allowed: "the path of a PEM file: mqtt.tls_listeners and mqtt.wss_listeners need tls.certificate and tls.private_key",
                source: "the configuration")
        }
    }

    private static func apply(_ key: ConfigurationKey, _ value: TOMLValue, to config: inout StarlingConfiguration, source: String) throws {
        if let allowed = key.apply(&config, value) {
            // A secret is never printed, not even a wrong one.
            let shown = key.path == "cluster.secret" ? "(hidden)" : describe(value)
            throw ConfigurationError(key: key.path, value: shown, allowed: allowed, source: source)
        }
    }

    private static func allowedText(for key: ConfigurationKey) -> String {
        var probe = StarlingConfiguration()
        return key.apply(&probe, .table(TOMLTable())) ?? "a valid value"
    }

    private static func parseEnvironment(_ text: String, as kind: ConfigurationKey.Kind) -> TOMLValue? {
        switch kind {
        case .integer: Int64(text).map(TOMLValue.integer)
        case .float: Double(text).map(TOMLValue.float)
        case .boolean: ["true": true, "1": true, "false": false, "0": false][text.lowercased()].map(TOMLValue.boolean)
        case .string: .string(text)
        case .stringList: .array(text.split(separator: ",").map { .string($0.trimmingSpaces()) })
        }
    }

    private static func applyAuthorization(_ value: TOMLValue, to config: inout StarlingConfiguration, source: String) throws {
        guard case .table(let table) = value else {
            throw ConfigurationError(
                key: "authorization", value: describe(value), allowed: "a table with [[authorization.rules]]", source: source)
        }
        for (name, rulesValue) in table {
            guard name == "rules", case .array(let rules) = rulesValue else {
                throw ConfigurationError(
                    key: "authorization.\(name)", value: describe(rulesValue), allowed: "[[authorization.rules]] entries", source: source)
            }
            for (position, ruleValue) in rules.enumerated() {
                let key = "authorization.rules[\(position)]"
                guard case .table(let rule) = ruleValue else {
                    throw ConfigurationError(key: key, value: describe(ruleValue), allowed: "a table", source: source)
                }
                func string(_ field: String, required: Bool) throws -> String? {
                    guard let value = rule[field] else {
                        if required {
                            throw ConfigurationError(key: "\(key).\(field)", value: "(missing)", allowed: "a string", source: source)
                        }
                        return nil
                    }
                    guard case .string(let s) = value else {
                        throw ConfigurationError(key: "\(key).\(field)", value: describe(value), allowed: "a string", source: source)
                    }
                    return s
                }
                for field in rule.keys where !["permission", "action", "filter", "username", "client_id"].contains(field) {
                    throw ConfigurationError(
                        key: "\(key).\(field)", value: describe(rule[field]!),
                        allowed: "the fields permission, action, filter, username, client_id", source: source)
                }
                let permissionText = try string("permission", required: true)!
                guard let permission = RuleAuthorizer.Rule.Permission(rawValue: permissionText) else {
                    throw ConfigurationError(
                        key: "\(key).permission", value: "\"\(permissionText)\"", allowed: "\"allow\" or \"deny\"", source: source)
                }
                let actionText = try string("action", required: true)!
                guard let action = RuleAuthorizer.Rule.Action(rawValue: actionText) else {
                    throw ConfigurationError(
                        key: "\(key).action", value: "\"\(actionText)\"", allowed: "\"publish\", \"subscribe\" or \"all\"", source: source)
                }
                let filter = try string("filter", required: true)!
                do {
                    _ = try MQTTTopicFilter(filter)
                } catch {
                    throw ConfigurationError(
                        key: "\(key).filter", value: "\"\(filter)\"", allowed: "a valid MQTT topic filter (\(error.message))",
                        source: source)
                }
                config.authorizationRules.append(
                    RuleAuthorizer.Rule(
                        permission: permission, action: action, filter: filter,
                        username: try string("username", required: false), clientID: try string("client_id", required: false)))
            }
        }
    }

    static func describe(_ value: TOMLValue) -> String {
        switch value {
        case .string(let s): "\"\(s)\""
        case .integer(let i): "\(i)"
        case .float(let f): "\(f)"
        case .boolean(let b): "\(b)"
        case .array(let items): "[\(items.map(describe).joined(separator: ", "))]"
        case .table: "a table"
        default: "\(value)"
        }
    }

    /// The full default configuration, every key documented: what `starling generate-config` prints.
    public static func defaultDocument() -> String {
        var lines = [
            "# Starling configuration. Every key is shown with its default value.",
            "# Environment variables STARLING_<SECTION>_<KEY> override this file; flags override both.", ""
        ]
        var section = ""
        for key in ConfigurationKey.all {
            if key.section != section {
                section = key.section
                if lines.last != "" { lines.append("") }
                lines.append("[\(section)]")
            }
            for line in wrap(key.doc) { lines.append("# \(line)") }
            lines.append("# (\(key.environmentName))")
            lines.append("\(key.name) = \(key.defaultLiteral)")
            lines.append("")
        }
        lines += [
            "# Authorization rules, checked in order; the first that applies decides; none = allow.",
            "# permission: \"allow\" or \"deny\"; action: \"publish\", \"subscribe\" or \"all\";",
            "# filter: a topic filter, where %u and %c stand for the user name and client id;",
            "# username and client_id (optional) limit the rule to one user or client.",
            "# A denied SUBSCRIBE gets 0x80 for that filter, and subscribe rules also",
            "# apply to every message delivered; a denied PUBLISH gets PUBACK/PUBREC 0x87 (5.0) or is",
            "# acknowledged and dropped (3.x).",
            "#",
            "# [[authorization.rules]]",
            "# permission = \"deny\"",
            "# action = \"subscribe\"",
            "# filter = \"test/nosubscribe\"",
            ""
        ]
        return lines.joined(separator: "\n")
    }

    private static func wrap(_ text: String, width: Int = 96) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if line.count + word.count + 1 > width && !line.isEmpty {
                lines.append(line)
                line = ""
            }
            line += line.isEmpty ? String(word) : " \(word)"
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
