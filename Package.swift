// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "starling",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MQTTCodec", targets: ["MQTTCodec"]),
        .library(name: "StarlingCore", targets: ["StarlingCore"]),
        .executable(name: "starling-microbench", targets: ["starling-microbench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // Pure codec: packets, properties, reason codes, topics, framing. NIOCore only.
        .target(
            name: "MQTTCodec",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // Broker core: no sockets, no SQL, no HTTP.
        .target(
            name: "StarlingCore",
            dependencies: ["MQTTCodec", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // Shared test support: golden packets, raw-packet helpers.
        .target(
            name: "StarlingTesting",
            dependencies: ["MQTTCodec", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // Micro-benchmarks for the codec and the subscription index (not tests).
        .executableTarget(
            name: "starling-microbench",
            dependencies: ["MQTTCodec", "StarlingCore", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/starling-microbench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MQTTCodecTests",
            dependencies: [
                "MQTTCodec", "StarlingTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StarlingCoreTests",
            dependencies: ["StarlingCore", "MQTTCodec", "StarlingTesting"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
