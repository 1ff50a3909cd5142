// swift-tools-version: 6.2
// The codec fuzzer, a package of its own so that `--sanitize=fuzzer` instruments only the
// codec and NIOCore. Run it with `scripts/fuzz-codec SECONDS`.
import PackageDescription

let package = Package(
    name: "starling-fuzz",
    dependencies: [
        .package(name: "starling", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")
    ],
    targets: [
        .executableTarget(
            name: "CodecFuzzer",
            dependencies: [
                .product(name: "MQTTCodec", package: "starling"),
                .product(name: "NIOCore", package: "swift-nio")
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
