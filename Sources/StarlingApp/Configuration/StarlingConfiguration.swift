import Glibc
public import StarlingSQLite
public import Logging
public import StarlingCore
public import StarlingTransport

/// Everything `starling serve` needs, from defaults, the TOML file, `STARLING_*` environment
/// variables and flags, in that order of precedence (later wins).
public struct StarlingConfiguration: Sendable, Equatable {
    /// MQTT listeners. With no configuration, only 127.0.0.1:1883: nothing is exposed.
    public var listeners: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 1883)]
    /// MQTT over TLS, over WebSocket and over secure WebSocket; none by default.
    public var tlsListeners: [ListenAddress] = []
    public var webSocketListeners: [ListenAddress] = []
    public var secureWebSocketListeners: [ListenAddress] = []
    /// Who may connect without a user name.
    public var allowAnonymous = AnonymousPolicy.loopback
    /// Every MQTT connection starts with a PROXY protocol header (v1 or v2) from a load balancer.
    public var proxyProtocol = false
    /// The HTTP path WebSocket clients upgrade at.
    public var webSocketPath = "/mqtt"
    /// HTTP proxies whose Forwarded / X-Forwarded-For headers name WebSocket clients.
    public var webSocketTrustedProxies = TrustedProxies.none
    /// PEM files of the TLS listeners: the certificate chain and its key; with `tlsClientCA`,
    /// clients must present a certificate it signed (mutual TLS).
    public var tlsCertificate = ""
    public var tlsPrivateKey = ""
    public var tlsClientCA = ""
    /// The operations HTTP listener (`/healthz`, `/readyz`, `/metrics`); nil: none.
    public var httpListen: ListenAddress?
    /// The bearer token of the admin API on that listener; "" serves no admin API.
    public var adminToken = ""
    public var logLevel: Logger.Level = .info
    public var broker = BrokerConfiguration()
    public var authorizationRules: [RuleAuthorizer.Rule] = []
    /// Where the embedded SQLite store lives (`DIR/starling.db`) when no PostgreSQL is given.
    public var dataDirectory = "./data"
    /// `postgres://user:password@host:port/database`; when set, PostgreSQL holds everything.
    public var postgresURL: String?
    /// SQLite `synchronous`: "NORMAL" survives a process crash, "FULL" also a power cut.
    public var sqliteSynchronous = SQLiteStore.Synchronous.normal
    /// With PostgreSQL: the most the spool may hold while PostgreSQL is away (`FallbackStore.maxBytes`).
    public var spoolMaxBytes = 1 << 30
    /// Keep everything in memory (no store): for tests and benchmarks of the core only.
    public var inMemory = false
    /// Milliseconds a commit may gather writes at light load (`GroupCommitWriter.commitDelay`).
    public var commitDelayMilliseconds = 1
    /// Writes waiting for the store above which publishers are paused (`GroupCommitWriter.backlogLimit`).
    public var maxPendingWrites = 32_768

    /// The node-to-node listener (`cluster.listen`, `--cluster`); nil: this node runs alone.
    public var clusterListen: ListenAddress?
    /// What peers dial (`cluster.advertise`); nil: the bound listen address (the host name for
    /// a wildcard address).
    public var clusterAdvertise: String?
    /// The secret every node of the cluster proves to its peers (`cluster.secret`).
    public var clusterSecret = ""
    /// Seconds a node's lease lasts without renewal; a node whose lease expired is dead.
    public var clusterLeaseTimeout = 5.0
    /// Seconds between `/readyz` turning 503 at SIGTERM and the first client being disconnected,
    /// for load balancers to notice (`server.drain_wait`).
    public var drainWait = 5.0
    /// Clients disconnected per second while draining (`server.drain_rate`).
    public var drainRate = 500
    /// Sent to 5.0 clients when draining (DISCONNECT 0x9C Use another server); "": 0x8B.
    public var serverReference: String?

    /// Node links over TLS, with the certificate and key of `[tls]`.
    public var clusterTLS = false
    /// Bytes a node link may hold unsent for a slow peer before messages for it are dropped.
    public var clusterLinkBuffer = 4 << 20

    /// `server.node_id`; nil = the host name. `broker.ingest.nodeID` holds the resolved name.
    public var nodeID: String? {
        didSet { broker.ingest.nodeID = nodeID ?? Self.hostName() }
    }

    public init() {
        broker.ingest.nodeID = Self.hostName()
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "starling" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
