import Logging
import MQTTCodec
import StarlingCore
import StarlingSQLite
import StarlingTransport

/// One configuration key: where it lives, what it means, its default, and how a value is
/// checked and applied. The table below is the single source of `generate-config`, of
/// environment variable names and of validation; each default is written once, in the type
/// that uses it (`StarlingConfiguration`, `BrokerConfiguration`), and read from there.
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

private let hostPort = "\"HOST:PORT\" (\"[::]:1883\" for IPv6; port 0 picks a free port)"

private func isPostgresURL(_ s: String) -> Bool {
    guard s.hasPrefix("postgres://") || s.hasPrefix("postgresql://"), let rest = s.split(separator: "@").last else { return false }
    return !rest.isEmpty
}

extension ConfigurationKey {
    static let all: [ConfigurationKey] = [
        .init("server", "log_level", \.logLevel, .choice, "Log level."),
        .init(
            "server", "node_id", \.nodeID, .optionalString("a node name, or \"\" for the host name"),
            "This node's name, stored with every ingested row; \"\" = the host name."),
        .init(
            "server", "drain_wait", \.drainWait, .seconds(0...600),
            "At SIGTERM, seconds between /readyz turning 503 and the first client being disconnected: load balancers stop sending new clients meanwhile."
        ),
        .init(
            "server", "drain_rate", \.drainRate, .integer(1...1_000_000),
            "Clients disconnected per second while draining, so that they reconnect to the other nodes as a stream rather than a storm."),
        .init(
            "server", "reference", \.serverReference, .optionalString("\"\" or a server reference such as \"mqtt.example.com:1883\""),
            "Sent to MQTT 5.0 clients when draining: DISCONNECT 0x9C (Use another server) with this Server Reference; \"\" sends 0x8B (Server shutting down)."
        ),
        .init(
            "cluster", "listen", \.clusterListen, .optionalListenAddress("a node that runs alone"),
            "The node-to-node listener, \(hostPort); \"\" runs this node alone. A cluster needs PostgreSQL (storage.postgres_url) shared by every node. Flag --cluster."
        ),
        .init(
            "cluster", "advertise", \.clusterAdvertise, .optionalString("\"HOST:PORT\" or \"\"") { ListenAddress($0) != nil },
            "The address peers dial to reach this node's cluster listener; \"\" = the bound listen address (with the host name for 0.0.0.0 or ::)."
        ),
        .init(
            "cluster", "secret", \.clusterSecret, .string("\"\" or a secret of at least 16 bytes") { $0.isEmpty || $0.utf8.count >= 16 },
            "The secret every node proves to its peers with a challenge-response (HMAC-SHA-256; it never crosses the network). Required, at least 16 bytes, when cluster.listen is not a loopback address; prefer STARLING_CLUSTER_SECRET to the file."
        ),
        .init(
            "cluster", "lease_timeout", \.clusterLeaseTimeout, .seconds(1...300),
            "Seconds a node's membership lease lasts without renewal (renewed every second or a third of this): a node whose lease expired is dead. Takeovers of sessions never wait for it."
        ),
        .init(
            "cluster", "tls", \.clusterTLS, .boolean,
            "Node links over TLS, with tls.certificate and tls.private_key (peers are authenticated by cluster.secret either way; with tls.client_ca set, a peer's certificate must be signed by it)."
        ),
        .init(
            "cluster", "link_buffer", \.clusterLinkBuffer, .integer(65_536...1 << 30),
            "Bytes a node link may hold unsent for a slow peer; beyond them, messages for that peer are dropped and counted (QoS 0 and clean sessions' copies; stored sessions' copies are in the store), so a slow peer never holds a publisher back."
        ),
        .init(
            "ingest", "enabled", \.broker.ingest.enabled, .boolean,
            "Store every published message of the ingest topics as a row of the messages table (needs a store)."),
        .init("ingest", "topics", \.broker.ingest.topics, .topicFilters, "Topic filters whose messages are stored; $SYS topics never are."),
        .init(
            "ingest", "dedup", \.broker.ingest.dedup, .choice,
            "\"dup_flag\": a QoS 1 message identical to the last one with its packet id is a re-send only when it carries DUP = 1 (a steady sensor's repeats are kept). \"content\": any identical repeat of a packet id is a re-send (for clients that re-send without DUP; identical readings reusing a packet id collapse)."
        ),
        .init(
            "ingest", "retention", \.broker.ingest.retentionSeconds, .duration,
            "How long rows are kept, e.g. \"30d\", \"12h\", \"90m\"; \"\" keeps them. PostgreSQL drops daily partitions; SQLite deletes in small batches."
        ),
        .init(
            "storage", "data_dir", \.dataDirectory, .string("a non-empty directory path") { !$0.isEmpty },
            "Directory of the embedded SQLite store (DIR/starling.db), used when storage.postgres_url is empty; with PostgreSQL, of the spool (DIR/spool.db) that takes commits while PostgreSQL cannot be reached."
        ),
        .init(
            "storage", "postgres_url", \.postgresURL,
            .optionalString("a postgres://user:password@host:port/database URL or \"\"", isPostgresURL),
            "postgres://user:password@host:port/database. When set, PostgreSQL holds sessions and retained messages, and SQLite only spools commits while PostgreSQL cannot be reached (storage.spool_max_bytes). Empty = SQLite."
        ),
        .init(
            "storage", "sqlite_synchronous", \.sqliteSynchronous, .choice,
            "SQLite synchronous mode: \"NORMAL\" survives a process crash; \"FULL\" also survives a power cut, at the cost of an fsync per commit."
        ),
        .init(
            "storage", "commit_delay_ms", \.commitDelayMilliseconds, .integer(0...100),
            "At light load (fewer than 64 writes waiting), milliseconds a commit may wait to gather more: one commit per millisecond instead of one per message costs the store far less, and an acknowledgement at most this much more. Writes nothing waits for (QoS 0 ingest rows) gather up to 5 ms. 0 = commit at once."
        ),
        .init(
            "storage", "max_pending_writes", \.maxPendingWrites, .integer(100...10_000_000),
            "Writes waiting for the store above which reading from publishing clients pauses (TCP holds their messages) until half of them are committed; a flood of QoS 0 messages with the ingest bridge cannot outrun the store without bound. Not while the store is unreachable: then QoS 0 keeps flowing."
        ),
        .init(
            "storage", "spool_max_bytes", \.spoolMaxBytes, .integer(1_048_576...1 << 50),
            "With storage.postgres_url: the most bytes the local spool (DIR/spool.db in storage.data_dir) may hold while PostgreSQL cannot be reached. Full, the node stops acknowledging and stops reading from publishers until the replay makes room; it never drops what it acknowledged. Default 1 GiB."
        ),
        .init(
            "storage", "in_memory", \.inMemory, .boolean,
            "Keep sessions and retained messages in memory only (nothing survives a restart). For tests and benchmarks."),
        .init(
            "http", "listen", \.httpListen, .optionalListenAddress("no HTTP listener"),
            "Address of the operations HTTP endpoints /healthz, /readyz (G5) and /metrics (Prometheus), \"HOST:PORT\" (port 0 picks a free port); \"\" serves none."
        ),
        .init(
            "http", "admin_token", \.adminToken,
            .string("\"\" or a token of at least 16 characters without spaces") {
                $0.isEmpty || ($0.count >= 16 && !$0.contains(where: \.isWhitespace))
            },
            "Bearer token of the admin API (/api/v1: list and disconnect clients; `starling ctl clients`) on http.listen; \"\" serves no admin API. At least 16 characters; prefer the environment variable to the file."
        ),
        .init(
            "auth", "allow_anonymous", \.allowAnonymous, .choice,
            "Who may connect without a user name: \"loopback\" (clients of listeners configured on 127.0.0.0/8 or ::1 only; behind the PROXY protocol, clients whose announced address is one), \"true\" (everyone) or \"false\" (no one). Users are managed with `starling ctl users`; with none, user names are not checked and every client counts as anonymous."
        ),
        .init(
            "tls", "certificate", \.tlsCertificate, .string("the path of a PEM file, or \"\""),
            "PEM file of the TLS listeners' certificate chain (server certificate first)."),
        .init(
            "tls", "private_key", \.tlsPrivateKey, .string("the path of a PEM file, or \"\""),
            "PEM file of the private key of tls.certificate."),
        .init(
            "tls", "client_ca", \.tlsClientCA, .string("the path of a PEM file, or \"\""),
            "PEM file of the certificate authorities whose client certificates are accepted: when set, TLS clients must present one (mutual TLS); \"\" asks for none."
        ),
        .init(
            "mqtt", "listeners", \.listeners, .listenAddresses,
            "Addresses to accept MQTT on, \(hostPort). The default exposes nothing beyond this machine."),
        .init(
            "mqtt", "tls_listeners", \.tlsListeners, .listenAddresses,
            "Addresses to accept MQTT over TLS on (usually port 8883); they need tls.certificate and tls.private_key."),
        .init(
            "mqtt", "ws_listeners", \.webSocketListeners, .listenAddresses,
            "Addresses to accept MQTT over WebSocket on (HTTP upgrade at mqtt.ws_path, subprotocol mqtt; usually port 8083 or 80 behind an HTTP load balancer)."
        ),
        .init(
            "mqtt", "wss_listeners", \.secureWebSocketListeners, .listenAddresses,
            "Addresses to accept MQTT over secure WebSocket on (usually port 8084 or 443); they need tls.certificate and tls.private_key."),
        .init(
            "mqtt", "proxy_protocol", \.proxyProtocol, .boolean,
            "Every connection on the MQTT listeners starts with a PROXY protocol header (v1 or v2, as HAProxy's send-proxy-v2 or an AWS NLB send): the broker then logs and authorizes the client's address. Connections without one are closed, so only enable it behind such a balancer."
        ),
        .init(
            "mqtt", "ws_path", \.webSocketPath,
            .string("a path starting with \"/\", without spaces, \"?\" or \"#\"") {
                $0.hasPrefix("/") && !$0.contains { $0 == " " || $0 == "?" || $0 == "#" }
            },
            "The HTTP path of the WebSocket listeners."),
        .init(
            "mqtt", "ws_trusted_proxies", \.webSocketTrustedProxies, .trustedProxies,
            "Addresses or CIDR ranges of the HTTP proxies (nginx, a cloud balancer) in front of the WebSocket listeners whose Forwarded or X-Forwarded-For header names the client; the client's address then decides anonymous access (auth.allow_anonymous = \"loopback\") and appears in logs and the admin API. Headers from any other address are ignored. [] trusts none."
        ),
        .init(
            "mqtt", "max_keepalive", \.broker.maxKeepAlive, .integer(0...65535),
            "Largest keep alive in seconds (0 = no maximum). A 5.0 client asking for more, or for 0, gets this as Server Keep Alive; a 3.x client is refused with CONNACK 0x02."
        ),
        .init(
            "mqtt", "connect_timeout", \.broker.connectTimeout, .seconds(0.1...3600),
            "Seconds a new connection has to send CONNECT before it is closed."),
        .init(
            "mqtt", "max_packet_size", \.broker.maxPacketSize, .integer(16...268_435_460),
            "Largest packet accepted in bytes, fixed header included; a larger declared size is refused (0x95) before any of it is buffered."
        ),
        .init(
            "mqtt", "max_connections", \.broker.maxConnections, .integer(1...10_000_000),
            "Most simultaneous client connections; more are refused (0x97 / 3.x 0x03)."),
        .init(
            "mqtt", "max_inflight", \.broker.maxInflight, .integer(1...65535),
            "Outbound QoS 1/2 messages in flight per session, also capped by the client's Receive Maximum."),
        .init(
            "mqtt", "receive_maximum", \.broker.receiveMaximum, .integer(1...65535),
            "Inbound QoS 2 messages a client may leave awaiting PUBREL (announced as Receive Maximum; exceeding it is DISCONNECT 0x93)."),
        .init(
            "mqtt", "max_queued_messages", \.broker.maxQueuedMessages, .integer(0...100_000_000),
            "Messages queued per session beyond the in-flight window (offline sessions, slow clients)."),
        .init(
            "mqtt", "queue_full_policy", \.broker.queueFullPolicy, .choice,
            "When a queue is full, its oldest QoS 0 message is dropped first; if there is none, \"drop_new\" refuses the new message and \"drop_oldest\" drops the oldest. Every drop is counted in $SYS/broker/messages/dropped and logged."
        ),
        .init(
            "mqtt", "topic_alias_maximum", \.broker.topicAliasMaximum, .integer(0...65535),
            "Topic aliases a 5.0 client may use towards the broker (0 = none)."),
        .init("mqtt", "max_topic_levels", \.broker.maxTopicLevels, .integer(1...1024), "Most levels in a topic name or filter."),
        .init("mqtt", "max_topic_length", \.broker.maxTopicLength, .integer(1...65535), "Longest topic name or filter in bytes."),
        .init(
            "mqtt", "max_subscriptions_per_client", \.broker.maxSubscriptionsPerClient, .integer(1...10_000_000),
            "Most subscriptions per client (more get 0x97 / 3.x 0x80)."),
        .init(
            "mqtt", "max_client_id_length", \.broker.maxClientIDLength, .integer(1...65535),
            "Longest client identifier in bytes (longer ones get 0x85 / 3.x 0x02)."),
        .init(
            "mqtt", "maximum_qos", \.broker.maximumQoS, .qos, "Highest QoS accepted from publishers and granted to subscribers (0, 1 or 2)."
        ),
        .init("mqtt", "retain_available", \.broker.retainAvailable, .boolean, "Whether retained messages are supported."),
        .init(
            "mqtt", "shared_subscription_strategy", \.broker.sharedStrategy, .choice,
            "How one member of a $share group is chosen for each message; in a cluster, first the node that serves it, among the nodes with members (\"local\": this node when it has members)."
        ),
        .init("mqtt", "sys_interval", \.broker.sysInterval, .seconds(0...86_400), "Seconds between $SYS/broker/... updates (0 = off)."),
        .init(
            "mqtt", "max_session_expiry", \.broker.maxSessionExpiry, .integer(0...4_294_967_295),
            "Largest Session Expiry Interval granted in seconds (4294967295 = sessions may never expire)."),
        .init(
            "mqtt", "validate_utf8_payloads", \.broker.validateUTF8Payloads, .boolean,
            "Refuse payloads marked UTF-8 (Payload Format Indicator 1) that are not (0x99)."),
        .init(
            "mqtt", "allow_empty_client_id", \.broker.allowEmptyClientID, .boolean,
            "Let 3.x clients with Clean Session 1 connect with an empty client id and assign one (5.0 always may).")
    ]
}
