// Micro-benchmarks of the codec and the subscription index (not tests: they report numbers).
//   swift run -c release starling-microbench [codec|index|all]
//   swift run -c release starling-microbench store-sqlite DIR | store-postgres URL
import MQTTCodec
import NIOCore
import StarlingCore
import Foundation

func measure(_ name: String, iterations: Int, unit: String = "ops", _ body: () -> Void) {
    // Warm up, then time three rounds and report the best.
    for _ in 0..<max(1, iterations / 10) { body() }
    var best = Duration.seconds(1_000)
    for _ in 0..<3 {
        let start = ContinuousClock.now
        for _ in 0..<iterations { body() }
        best = min(best, ContinuousClock.now - start)
    }
    let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) / 1e18
    let rate = Double(iterations) / seconds
    let nanos = seconds / Double(iterations) * 1e9
    print(
        "\(name.padding(toLength: 52, withPad: " ", startingAt: 0)) \(String(format: "%12.0f", rate)) \(unit)/s  \(String(format: "%8.1f", nanos)) ns/op"
    )
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func codecBenchmarks() {
    print("== codec: 64-byte payload PUBLISH, topic \"sensors/device-0042/temperature\"")
    let payload = ByteBuffer(repeating: 0x7A, count: 64)
    for (version, qos) in [(MQTTProtocolVersion.v3_1_1, MQTTQoS.atMostOnce), (.v3_1_1, .atLeastOnce), (.v5, .atLeastOnce)] {
        let publish = MQTTPacket.publish(
            MQTTPublish(
                topic: "sensors/device-0042/temperature", payload: payload, qos: qos,
                packetID: qos == .atMostOnce ? nil : 42))
        let bytes = publish.encoded(version: version)
        var out = ByteBuffer()
        out.reserveCapacity(1 << 16)
        measure("encode PUBLISH \(version) \(qos) (\(bytes.readableBytes) B)", iterations: 2_000_000) {
            out.clear()
            publish.encode(into: &out, version: version)
        }
        measure("decode PUBLISH \(version) \(qos) (frame + packet)", iterations: 2_000_000) {
            var input = bytes
            let frame = try! MQTTFrame.read(from: &input, maximumPacketSize: 1 << 20)!
            blackHole(try! MQTTPacket.decode(frame, version: version, role: .server))
        }
    }
}

func indexBenchmarks() {
    print("== subscription index: 100,000 filters, a quarter with wildcards")
    let index = SubscriptionIndex<Int, UInt8>()
    var rng = SystemRandomNumberGenerator()
    var topics: [String] = []
    for i in 0..<100_000 {
        let site = i % 100, device = i / 100
        let raw: String
        switch i % 4 {
        case 0: raw = "site/\(site)/device/\(device)/+"  // wildcard
        default: raw = "site/\(site)/device/\(device)/m\(i % 3)"
        }
        index.insert(try! MQTTTopicFilter(raw), subscriber: i, value: 0)
        topics.append("site/\(site)/device/\(device)/m\(i % 3)")
    }
    index.insert(try! MQTTTopicFilter("site/#"), subscriber: -1, value: 0)
    index.insert(try! MQTTTopicFilter("+/+/device/+/m1"), subscriber: -2, value: 0)
    topics.shuffle(using: &rng)
    var next = 0
    measure("lookup (topic matching 2-4 subscriptions)", iterations: 1_000_000, unit: "lookups") {
        let topic = topics[next]
        next = (next + 1) % topics.count
        blackHole(index.matches(topic))
    }
    measure("lookup of a topic with no match", iterations: 1_000_000, unit: "lookups") {
        blackHole(index.matches("other/branch/none"))
    }
    var churn = 0
    measure("insert + remove one filter", iterations: 200_000, unit: "pairs") {
        let filter = try! MQTTTopicFilter("churn/\(churn % 1000)/+")
        index.insert(filter, subscriber: churn, value: 1)
        index.remove(filter, subscriber: churn)
        churn += 1
    }
    print("subscriptions held: \(index.count)")
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first ?? "all" {
case "codec": codecBenchmarks()
case "index": indexBenchmarks()
case "all": codecBenchmarks(); indexBenchmarks()
case "store-sqlite" where arguments.count == 2: try await StoreBenchmarks.sqlite(directory: arguments[1])
case "store-postgres" where arguments.count == 2: try await StoreBenchmarks.postgres(url: arguments[1])
default:
    print("usage: starling-microbench [codec|index|all] | store-sqlite DIR | store-postgres URL")
    exit(2)
}
