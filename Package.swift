// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault")
]

let package = Package(
    name: "starling",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MQTTCodec", targets: ["MQTTCodec"]),
        .library(name: "StarlingCore", targets: ["StarlingCore"]),
        .executable(name: "starling", targets: ["starling"]),
        .executable(name: "starling-microbench", targets: ["starling-microbench"]),
        .executable(name: "starling-bench", targets: ["starling-bench"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.0.0"..<"5.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1")
    ],
    targets: [
        // Pure codec: packets, properties, reason codes, topics, framing. NIOCore only.
        .target(
            name: "MQTTCodec",
            dependencies: [.nioCore],
            swiftSettings: swiftSettings
        ),
        // Broker core: no sockets, no SQL, no HTTP.
        .target(
            name: "StarlingCore",
            dependencies: ["MQTTCodec", .nioCore, .dequeModule, .logging, .crypto],
            swiftSettings: swiftSettings
        ),
        // Configuration, wiring of the ServiceGroup; the end-to-end tests run exactly this.
        // The schema: migrations/*/NNNN_name.sql embedded by scripts/generate-migrations.
        .target(name: "StarlingMigrations", swiftSettings: swiftSettings),
        // The embedded store: SQLite through GRDB.
        .target(
            name: "StarlingSQLite",
            dependencies: ["MQTTCodec", "StarlingCore", "StarlingMigrations", .grdb, .nioCore, .logging],
            swiftSettings: swiftSettings
        ),
        // The shared store: PostgreSQL through postgres-nio.
        .target(
            name: "StarlingPostgres",
            dependencies: ["MQTTCodec", "StarlingCore", "StarlingMigrations", .postgresNIO, .nioCore, .logging],
            swiftSettings: swiftSettings
        ),
        // SwiftNIO listeners (TCP, TLS, WebSocket, secure WebSocket) and channel handlers.
        .target(
            name: "StarlingTransport",
            dependencies: ["MQTTCodec", "StarlingCore", .nioCore, .nioPosix, .nioHTTP1, .nioWebSocket, .nioSSL, .logging],
            swiftSettings: swiftSettings
        ),
        // Operations HTTP: /healthz, /readyz, /metrics (Hummingbird, Prometheus text format).
        .target(
            name: "StarlingOps",
            dependencies: ["StarlingCore", .hummingbird, .prometheus, .nioCore, .logging, .serviceLifecycle],
            swiftSettings: swiftSettings
        ),
        // The cluster: membership leases, node links, takeover (docs/architecture.md, "Cluster").
        .target(
            name: "StarlingCluster",
            dependencies: ["StarlingCore", "MQTTCodec", .nioCore, .nioSSL, .nioPosix, .crypto, .logging],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "StarlingApp",
            dependencies: [
                "MQTTCodec", "StarlingCore", "StarlingTransport", "StarlingSQLite", "StarlingPostgres", "StarlingOps", "StarlingCluster",
                .postgresNIO, .nioSSL, .crypto, .cryptoExtras, .nioCore, .nioPosix, .logging, .serviceLifecycle
            ],
            swiftSettings: swiftSettings
        ),
        // The broker executable: argument parsing + StarlingApp.
        .executableTarget(
            name: "starling",
            dependencies: ["StarlingApp", "StarlingOps", "StarlingCore", .argumentParser, .logging],
            swiftSettings: swiftSettings
        ),
        // Shared test support: golden packets, raw-packet helpers.
        .target(
            name: "StarlingTesting",
            dependencies: ["MQTTCodec", "StarlingCore", .nioCore, .logging],
            swiftSettings: swiftSettings
        ),
        // Micro-benchmarks for the codec and the subscription index (not tests).
        .executableTarget(
            name: "starling-microbench",
            dependencies: ["MQTTCodec", "StarlingCore", "StarlingSQLite", "StarlingPostgres", .nioCore, .postgresNIO, .logging],
            path: "Benchmarks/starling-microbench",
            swiftSettings: swiftSettings
        ),
        // Load generator (emqtt-bench style) and a trivial sink server; codec and NIO only, no broker code.
        .executableTarget(
            name: "starling-bench",
            dependencies: ["MQTTCodec", .nioCore, .nioPosix, .argumentParser, .histogram],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MQTTCodecTests",
            dependencies: ["MQTTCodec", "StarlingTesting", .nioCore, .nioTestUtils, .nioEmbedded],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingClusterTests",
            dependencies: ["StarlingCluster", "StarlingCore", "StarlingTesting", "MQTTCodec", .nioCore, .nioPosix, .nioEmbedded, .logging],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingAppTests",
            dependencies: [
                "StarlingApp", "StarlingCore", "StarlingCluster", "StarlingTesting", "MQTTCodec", .nioCore, .nioPosix, .nioEmbedded
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingTransportTests",
            dependencies: ["StarlingTransport", "StarlingCore", "MQTTCodec", .nioCore, .nioEmbedded],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingStoreTests",
            dependencies: [
                "StarlingCore", "StarlingSQLite", "StarlingPostgres", "StarlingTesting", "StarlingMigrations",
                .postgresNIO, .grdb, .logging
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingCoreTests",
            dependencies: ["StarlingCore", "MQTTCodec", "StarlingTesting", .nioPosix, .logging],
            swiftSettings: swiftSettings
        )
    ],
    swiftLanguageModes: [.v6]
)

/// The packages' products the targets use, each named once.
extension Target.Dependency {
    static var argumentParser: Self { .product(name: "ArgumentParser", package: "swift-argument-parser") }
    static var crypto: Self { .product(name: "Crypto", package: "swift-crypto") }
    static var cryptoExtras: Self { .product(name: "CryptoExtras", package: "swift-crypto") }
    static var dequeModule: Self { .product(name: "DequeModule", package: "swift-collections") }
    static var grdb: Self { .product(name: "GRDB", package: "GRDB.swift") }
    static var histogram: Self { .product(name: "Histogram", package: "hdrhistogram-swift") }
    static var hummingbird: Self { .product(name: "Hummingbird", package: "hummingbird") }
    static var logging: Self { .product(name: "Logging", package: "swift-log") }
    static var nioCore: Self { .product(name: "NIOCore", package: "swift-nio") }
    static var nioEmbedded: Self { .product(name: "NIOEmbedded", package: "swift-nio") }
    static var nioHTTP1: Self { .product(name: "NIOHTTP1", package: "swift-nio") }
    static var nioPosix: Self { .product(name: "NIOPosix", package: "swift-nio") }
    static var nioSSL: Self { .product(name: "NIOSSL", package: "swift-nio-ssl") }
    static var nioTestUtils: Self { .product(name: "NIOTestUtils", package: "swift-nio") }
    static var nioWebSocket: Self { .product(name: "NIOWebSocket", package: "swift-nio") }
    static var postgresNIO: Self { .product(name: "PostgresNIO", package: "postgres-nio") }
    static var prometheus: Self { .product(name: "Prometheus", package: "swift-prometheus") }
    static var serviceLifecycle: Self { .product(name: "ServiceLifecycle", package: "swift-service-lifecycle") }
}
