import ArgumentParser
import MQTTCodec
import NIOCore
import NIOPosix

@main
struct StarlingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling-bench",
        abstract: "An MQTT load generator (in the spirit of emqtt-bench) and a trivial sink server.",
        discussion: """
            Progress lines go to standard error once a second; the final summary goes to standard \
            output (one JSON object with --json). Payloads of 16 bytes or more begin with the send \
            time (monotonic ns), the publisher index and a sequence number, so any subscriber on the \
            same machine measures end-to-end latency and duplicates.
            """,
        subcommands: [Conn.self, Pub.self, Sub.self, PubSub.self, Sink.self]
    )
}

// MARK: - conn

struct Conn: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open idle connections at a rate and hold them (PINGREQ per keep alive).")

    @OptionGroup var common: CommonOptions

    @Option(help: "Connections to open.")
    var count = 100

    @Option(help: "Connections opened per second (0 = all at once).")
    var rate = 1000.0

    @Option(help: "The broker's process id: report its resident memory (VmRSS) before and after, per connection.")
    var brokerPid: Int32?

    func validate() throws {
        try validateClients(count, "--count")
        try validateRate(rate)
        if let brokerPid, residentMemory(pid: brokerPid) == nil {
            throw ValidationError("--broker-pid \(brokerPid): cannot read VmRSS from /proc/\(brokerPid)/status")
        }
    }

    func run() throws {
        let bench = try Bench(common: common, config: try common.runConfig())
        let prefix = common.prefix
        let specs = (0..<count).map { ClientSpec(role: .idle, index: $0, clientID: "\(prefix)-c\($0 + 1)") }
        let rssBefore = brokerPid.flatMap { residentMemory(pid: $0) }
        printError(
            "starling-bench conn: \(count) connections to \(common.host):\(common.port) at \(rate > 0 ? fixed(rate, 0) + "/s" : "once"), MQTT \(common.mqttVersion.version)"
        )
        let phase = bench.connect(specs, rate: rate, label: "conn")
        let connectSeconds = phase.seconds
        printError(
            "conn: \(grouped(phase.ok)) connected, \(grouped(phase.failed)) failed in \(fixed(connectSeconds, 2)) s; holding \(common.duration > 0 ? fixed(common.duration, 0) + " s" : "until interrupted")"
        )
        let start = monotonicNanos()
        if phase.ok > 0 { _ = bench.run(from: start, duration: common.duration, connectionsOnly: true) { _ in false } }
        let rssAfter = brokerPid.flatMap { residentMemory(pid: $0) }
        let final = bench.snapshot()
        bench.shutdown()

        var summary = Summary(mode: "conn")
        summary.json.set("mqtt_version", common.mqttVersion.version.description)
        summary.json.set("connections_requested", count)
        summary.json.set("connections_ok", phase.ok)
        summary.json.set("connections_failed", final.connectFailed)
        summary.json.set("connections_dropped", final.dropped)
        summary.json.set("connect_seconds", connectSeconds)
        let connectRate = perSecond(phase.ok, connectSeconds)
        summary.json.set("connect_rate_per_s", connectRate, decimals: 1)
        summary.line(
            "connections",
            "ok \(grouped(phase.ok)) of \(grouped(count))  failed \(grouped(final.connectFailed))  dropped \(grouped(final.dropped))")
        summary.line("connect rate", "\(fixed(connectRate, 1)) conn/s (\(fixed(connectSeconds, 2)) s)")
        if let rssBefore, let rssAfter {
            let perConnection = phase.ok > 0 ? Double(rssAfter - rssBefore) / Double(phase.ok) : 0
            summary.json.set("broker_rss_before_bytes", rssBefore)
            summary.json.set("broker_rss_after_bytes", rssAfter)
            summary.json.set("broker_bytes_per_connection", perConnection, decimals: 0)
            summary.line(
                "broker memory",
                "VmRSS \(fixed(Double(rssBefore) / 1048576, 1)) MiB → \(fixed(Double(rssAfter) / 1048576, 1)) MiB, \(fixed(perConnection / 1024, 2)) KiB per connection"
            )
        } else if brokerPid != nil {
            summary.line("broker memory", "unreadable (did the broker exit?)")
        }
        summary.print(asJSON: common.json)
        if phase.ok == 0 { throw ExitCode.failure }
    }
}

// MARK: - pub

struct PublishOptions: ParsableArguments {
    @Option(help: "QoS of the published messages: 0, 1 or 2.")
    var qos = 0

    @Option(help: "Payload bytes per message.")
    var size = 64

    @Option(help: "Topic name; %i is the publisher's number (1-based).")
    var topic = "bench/%i"

    @Option(help: "Messages per second per publisher (0 = unthrottled).")
    var rate = 0.0

    @Option(help: "Unacknowledged QoS 1/2 messages per publisher.")
    var inflight = 20

    @Option(help: "Connections opened per second (0 = all at once).")
    var connectRate = 1000.0

    func validate() throws {
        try validateQoS(qos)
        try validateRate(rate)
        try validateRate(connectRate, "--connect-rate")
        try validateInflight(inflight)
        try validateTopicPattern(topic)
    }
}

/// Splits `limit` messages among `count` publishers; 0 stays unlimited.
func share(of limit: Int, index: Int, count: Int) -> Int {
    guard limit > 0 else { return 0 }
    return limit / count + (index < limit % count ? 1 : 0)
}

struct Pub: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish from N clients.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var publish: PublishOptions

    @Option(help: "Publishers.")
    var clients = 10

    @Option(help: "Seconds to wait after publishing for outstanding QoS 1/2 acknowledgements.")
    var drain = 5.0

    @Flag(help: "Send each payload as a distinct JSON object of --size bytes (what the ingest bridge parses), not binary.")
    var jsonPayload = false

    func validate() throws {
        if jsonPayload && publish.size < JSONPayload.minimumSize {
            throw ValidationError("--size must be at least \(JSONPayload.minimumSize) bytes with --json-payload, not \(publish.size)")
        }
        try validateClients(clients, "--clients")
        try validateSize(publish.size, minimum: 0)
        if common.countLimit > 0 && common.countLimit < clients {
            throw ValidationError("--count-limit \(common.countLimit) is less than one message per publisher (--clients \(clients))")
        }
    }

    func run() throws {
        var config = try common.runConfig(qos: publish.qos, size: publish.size, rate: publish.rate, inflight: publish.inflight)
        config.jsonPayload = jsonPayload
        let bench = try Bench(common: common, config: config)
        let prefix = common.prefix
        let specs = (0..<clients).map {
            ClientSpec(
                role: .publisher, index: $0, clientID: "\(prefix)-p\($0 + 1)", topic: expand(publish.topic, $0),
                messageLimit: share(of: common.countLimit, index: $0, count: clients))
        }
        printError(
            "starling-bench pub: \(clients) publishers → \(common.host):\(common.port), QoS \(publish.qos), \(publish.size) B, \(publish.rate > 0 ? fixed(publish.rate, 0) + " msg/s each" : "unthrottled"), MQTT \(config.version), \(common.threads) thread(s)"
        )
        let phase = bench.connect(specs, rate: publish.connectRate, label: "pub")
        var s = bench.snapshot()
        var start = monotonicNanos()
        var end = start
        if phase.ok > 0 && !interrupted {
            start = bench.startPublishing()
            end = bench.run(from: start, duration: common.duration) { $0.publishersDone >= phase.ok }
            bench.stopPublishing()
            if publish.qos > 0 { bench.drain(limit: drain) { $0.inflight == 0 } }
            s = bench.snapshot()
        }
        bench.shutdown()

        let seconds = Double(end - start) / 1e9
        var summary = Summary(mode: "pub")
        describe(&summary, config: config, publishers: clients, subscribers: 0, seconds: seconds)
        addConnections(&summary, s, ok: phase.ok)
        addPublishing(&summary, s, seconds: seconds, qos: publish.qos)
        summary.print(asJSON: common.json)
        if phase.ok == 0 { throw ExitCode.failure }
    }
}

// MARK: - sub

struct Sub: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Subscribe from N clients and count deliveries.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Subscribers.")
    var clients = 1

    @Option(help: "Topic filter; %i is the subscriber's number (1-based).")
    var topic = "bench/#"

    @Option(help: "QoS requested in SUBSCRIBE: 0, 1 or 2.")
    var qos = 0

    @Option(help: "Connections opened per second (0 = all at once).")
    var connectRate = 1000.0

    func validate() throws {
        try validateClients(clients, "--clients")
        try validateQoS(qos)
        try validateRate(connectRate, "--connect-rate")
        try validateFilterPattern(topic)
    }

    func run() throws {
        let config = try common.runConfig(subscribeQoS: qos)
        let bench = try Bench(common: common, config: config)
        let prefix = common.prefix
        let specs = (0..<clients).map {
            ClientSpec(role: .subscriber, index: $0, clientID: "\(prefix)-s\($0 + 1)", filters: [expand(topic, $0)])
        }
        printError(
            "starling-bench sub: \(clients) subscribers on \(topic) at \(common.host):\(common.port), QoS \(qos), MQTT \(config.version)")
        let phase = bench.connect(specs, rate: connectRate, label: "sub")
        let base = bench.snapshot()
        let start = monotonicNanos()
        let limit = common.countLimit
        let end = bench.run(from: start, duration: common.duration) { limit > 0 && $0.received - base.received >= limit }
        let s = bench.snapshot()
        let histogram = bench.latency()
        bench.shutdown()

        let seconds = Double(end - start) / 1e9
        var summary = Summary(mode: "sub")
        describe(&summary, config: config, publishers: 0, subscribers: clients, seconds: seconds)
        addConnections(&summary, s, ok: phase.ok)
        summary.json.set("received", s.received)
        summary.json.set("received_per_s", perSecond(s.received, seconds), decimals: 1)
        summary.json.set("duplicates", s.duplicates)
        summary.line("received", "\(grouped(s.received)) msgs  \(rateText(s.received, seconds))")
        summary.line("duplicates", grouped(s.duplicates))
        summary.addLatency(histogram)
        summary.print(asJSON: common.json)
        if phase.ok == 0 { throw ExitCode.failure }
    }
}

// MARK: - pubsub

struct PubSub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub",
        abstract: "Publishers and subscribers in one process: throughput, end-to-end latency, loss and duplicates.",
        discussion: """
            Loss counts expected minus distinct received deliveries, where expected = sent × \
            subscribers: every subscriber's filter must match every publisher's topic. Filler \
            subscriptions (--extra-subscriptions) never match the default topics; they load the \
            broker's subscription index to show its matching cost.
            """)

    @OptionGroup var common: CommonOptions
    @OptionGroup var publish: PublishOptions

    @Option(name: [.customLong("publishers"), .customLong("clients")], help: "Publishers.")
    var publishers = 10

    @Option(help: "Subscribers.")
    var subscribers = 1

    @Option(help: "Subscribers' topic filter; %i is the subscriber's number (1-based).")
    var filter = "bench/#"

    @Option(help: "QoS requested by subscribers (default: --qos).")
    var subQos: Int?

    @Option(help: "Seconds to wait after publishing for deliveries and acknowledgements still under way.")
    var drain = 5.0

    @Option(help: "Filler subscriptions that match no published topic, spread over --extra-clients.")
    var extraSubscriptions = 0

    @Option(help: "Clients holding the filler subscriptions.")
    var extraClients = 100

    @Option(help: "Percentage of filler subscriptions with wildcards.")
    var wildcardPercent = 25

    func validate() throws {
        try validateClients(publishers, "--publishers")
        try validateClients(subscribers, "--subscribers")
        try validateSize(publish.size, minimum: PayloadHeader.size)
        try validateFilterPattern(filter, "--filter")
        if let subQos { try validateQoS(subQos, "--sub-qos") }
        guard drain >= 0 else { throw ValidationError("--drain must be 0 or more seconds") }
        guard extraSubscriptions >= 0 else { throw ValidationError("--extra-subscriptions must be 0 or more") }
        try validateClients(extraClients, "--extra-clients")
        guard (0...100).contains(wildcardPercent) else { throw ValidationError("--wildcard-percent must be 0 to 100") }
        if common.countLimit > 0 && common.countLimit < publishers {
            throw ValidationError("--count-limit \(common.countLimit) is less than one message per publisher (--publishers \(publishers))")
        }
    }

    /// Filler filters: `load/c<client>/t<k>`, and with wildcards `bench/+/w<k>`, `+/x<client>/w<k>`
    /// or `load/c<client>/+/w<k>/#`; none matches a two-level topic such as `bench/1`.
    static func fillerFilters(total: Int, clients: Int, wildcardPercent: Int) -> [[String]] {
        guard total > 0 else { return [] }
        let perClient = (total + clients - 1) / clients
        var result: [[String]] = []
        var k = 0
        for c in 0..<clients where k < total {
            var filters: [String] = []
            for _ in 0..<perClient where k < total {
                if k % 100 < wildcardPercent {
                    switch k % 3 {
                    case 0: filters.append("bench/+/w\(k)")
                    case 1: filters.append("+/x\(c)/w\(k)")
                    default: filters.append("load/c\(c)/+/w\(k)/#")
                    }
                } else {
                    filters.append("load/c\(c)/t\(k)")
                }
                k += 1
            }
            result.append(filters)
        }
        return result
    }

    func run() throws {
        let subscribeQoS = subQos ?? publish.qos
        let config = try common.runConfig(
            qos: publish.qos, subscribeQoS: subscribeQoS, size: publish.size,
            rate: publish.rate, inflight: publish.inflight)
        let bench = try Bench(common: common, config: config)
        let prefix = common.prefix
        printError(
            "starling-bench pubsub: \(publishers) publishers (\(publish.topic)) → \(subscribers) subscribers (\(filter)) at \(common.host):\(common.port), QoS \(publish.qos)/\(subscribeQoS), \(publish.size) B, \(publish.rate > 0 ? fixed(publish.rate, 0) + " msg/s each" : "unthrottled"), MQTT \(config.version), \(common.threads) thread(s)"
        )

        var connectionsOK = 0
        let filler = Self.fillerFilters(total: extraSubscriptions, clients: extraClients, wildcardPercent: wildcardPercent)
        if !filler.isEmpty {
            let specs = filler.enumerated().map {
                ClientSpec(
                    role: .subscriber, index: $0.offset, clientID: "\(prefix)-x\($0.offset + 1)", filters: $0.element, measured: false)
            }
            let phase = bench.connect(specs, rate: publish.connectRate, label: "filler")
            connectionsOK += phase.ok
            printError("filler: \(grouped(extraSubscriptions)) subscriptions on \(phase.ok) clients in \(fixed(phase.seconds, 2)) s")
        }
        let subscriberSpecs = (0..<subscribers).map {
            ClientSpec(role: .subscriber, index: $0, clientID: "\(prefix)-s\($0 + 1)", filters: [expand(filter, $0)])
        }
        let subscriberPhase = bench.connect(subscriberSpecs, rate: publish.connectRate, label: "subscribers")
        connectionsOK += subscriberPhase.ok
        let publisherSpecs = (0..<publishers).map {
            ClientSpec(
                role: .publisher, index: $0, clientID: "\(prefix)-p\($0 + 1)", topic: expand(publish.topic, $0),
                messageLimit: share(of: common.countLimit, index: $0, count: publishers))
        }
        let publisherPhase = bench.connect(publisherSpecs, rate: publish.connectRate, label: "publishers")
        connectionsOK += publisherPhase.ok

        let measuredSubscribers = subscriberPhase.ok
        var start = monotonicNanos()
        var end = start
        var s = bench.snapshot()
        let base = s
        if publisherPhase.ok > 0 && measuredSubscribers > 0 && !interrupted {
            start = bench.startPublishing()
            end = bench.run(from: start, duration: common.duration) { $0.publishersDone >= publisherPhase.ok }
            bench.stopPublishing()
            bench.drain(limit: drain) { c in
                c.inflight == 0 && (c.received - base.received) - (c.duplicates - base.duplicates) >= c.sent * measuredSubscribers
            }
            s = bench.snapshot()
        }
        let histogram = bench.latency()
        bench.shutdown()

        let seconds = Double(end - start) / 1e9
        let receiveSeconds = max(seconds, s.lastReceive > start ? Double(s.lastReceive - start) / 1e9 : 0)
        var summary = Summary(mode: "pubsub")
        describe(&summary, config: config, publishers: publishers, subscribers: subscribers, seconds: seconds)
        summary.json.set("extra_subscriptions", extraSubscriptions)
        addConnections(&summary, s, ok: connectionsOK)
        addPublishing(&summary, s, seconds: seconds, qos: publish.qos)
        let expected = s.sent * measuredSubscribers
        let distinct = s.received - s.duplicates
        let loss = max(0, expected - distinct)
        let lossPercent = expected > 0 ? Double(loss) * 100 / Double(expected) : 0
        summary.json.set("received", s.received)
        summary.json.set("received_per_s", perSecond(s.received, receiveSeconds), decimals: 1)
        summary.json.set("receive_seconds", receiveSeconds)
        summary.json.set("expected", expected)
        summary.json.set("loss", loss)
        summary.json.set("loss_pct", lossPercent, decimals: 4)
        summary.json.set("duplicates", s.duplicates)
        summary.line(
            "received", "\(grouped(s.received)) msgs  \(rateText(s.received, receiveSeconds)) (over \(fixed(receiveSeconds, 2)) s)")
        summary.line(
            "loss", "\(grouped(loss)) of \(grouped(expected)) expected (\(fixed(lossPercent, 3))%)  duplicates \(grouped(s.duplicates))")
        summary.addLatency(histogram)
        summary.print(asJSON: common.json)
        if publisherPhase.ok == 0 || measuredSubscribers == 0 { throw ExitCode.failure }
    }
}

func describe(_ summary: inout Summary, config: RunConfig, publishers: Int, subscribers: Int, seconds: Double) {
    summary.json.set("mqtt_version", config.version.description)
    summary.json.set("qos", Int(config.qos.rawValue))
    summary.json.set("sub_qos", Int(config.subscribeQoS.rawValue))
    summary.json.set("payload_bytes", config.payloadSize)
    summary.json.set("rate_per_publisher", config.rate, decimals: 1)
    summary.json.set("inflight", config.inflight)
    summary.json.set("publishers", publishers)
    summary.json.set("subscribers", subscribers)
    summary.json.set("duration_s", seconds)
    summary.line("run", "\(fixed(seconds, 2)) s, MQTT \(config.version), \(publishers) publishers, \(subscribers) subscribers")
}

func addConnections(_ summary: inout Summary, _ s: Counters, ok: Int) {
    summary.json.set("connections_ok", ok)
    summary.json.set("connections_failed", s.connectFailed)
    summary.json.set("connections_dropped", s.dropped)
    summary.json.set("subscriptions_refused", s.subscribeRefused)
    var text = "ok \(grouped(ok))  failed \(grouped(s.connectFailed))  dropped \(grouped(s.dropped))"
    if s.subscribeRefused > 0 { text += "  refused subscriptions \(grouped(s.subscribeRefused))" }
    summary.line("connections", text)
}

func addPublishing(_ summary: inout Summary, _ s: Counters, seconds: Double, qos: Int) {
    summary.json.set("sent", s.sent)
    summary.json.set("sent_per_s", perSecond(s.sent, seconds), decimals: 1)
    summary.json.set("acked", s.acked)
    summary.json.set("acked_per_s", perSecond(s.acked, seconds), decimals: 1)
    summary.json.set("rejected", s.rejected)
    summary.json.set("unacked", qos > 0 ? s.inflight : 0)
    summary.line("sent", "\(grouped(s.sent)) msgs  \(rateText(s.sent, seconds))")
    if qos > 0 {
        summary.line(
            "acked",
            "\(grouped(s.acked)) msgs  \(rateText(s.acked, seconds))  rejected \(grouped(s.rejected))  unacked \(grouped(s.inflight))")
    }
}

// MARK: - sink

struct Sink: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A trivial MQTT server that acknowledges everything and discards messages (the generator's own ceiling).",
        discussion: """
            It accepts every CONNECT, grants every SUBSCRIBE, acknowledges PUBLISH at QoS 1 and 2 \
            and answers PINGREQ. With --forward it also sends a QoS 0 copy of every PUBLISH to every \
            connection that has subscribed, whatever its filter: the ceiling of pubsub's receiving side.
            """)

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 = pick a free one; the port is printed).")
    var port = 1883

    @Option(help: "Event loop threads.")
    var threads = 1

    @Option(help: "Seconds to run (0 = until SIGINT or SIGTERM).")
    var duration = 0.0

    @Flag(help: "Forward every PUBLISH (as QoS 0) to every subscribed connection; needs --threads 1.")
    var forward = false

    @Flag(help: "Print the final summary as one JSON object on standard output.")
    var json = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be 1 to 256, not \(threads)") }
        guard duration >= 0, duration.isFinite else { throw ValidationError("--duration must be 0 or more seconds") }
        if forward && threads != 1 { throw ValidationError("--forward needs --threads 1 (it forwards within one event loop)") }
    }

    func run() throws {
        raiseOpenFileLimit()
        installSignalHandlers()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let (channel, stats) = try startSink(group: group, host: host, port: port, forward: forward)
        printOut("starling-bench sink: listening on \(host):\(channel.localAddress?.port ?? port)")

        func snapshot() -> Counters {
            var total = Counters()
            for s in stats {
                if let c = try? s.eventLoop.submit({ s.value.counters }).wait() { total.add(c) }
            }
            return total
        }
        let start = monotonicNanos()
        var last = snapshot()
        var lastTick = start
        var printed = last
        var lastPrint = start
        var firstReceive: UInt64 = 0
        var lastReceive: UInt64 = 0
        var peak = 0.0
        while !interrupted {
            sleep(seconds: 0.1)
            let now = monotonicNanos()
            let s = snapshot()
            if s.received > last.received {
                if firstReceive == 0 { firstReceive = lastTick }
                lastReceive = now
            }
            last = s
            lastTick = now
            if now - lastPrint >= 1_000_000_000 {
                let seconds = Double(now - lastPrint) / 1e9
                let rate = Double(s.received - printed.received) / seconds
                peak = max(peak, rate)
                if s.received != printed.received || s.open != printed.open {
                    var line = "[\(padLeft(fixed(Double(now - start) / 1e9, 1), 6))s] recv \(grouped(Int(rate.rounded())))/s"
                    if forward { line += " fwd \(grouped(Int((Double(s.forwarded - printed.forwarded) / seconds).rounded())))/s" }
                    line += " | recv \(grouped(s.received)) | open \(s.open) connects \(s.connected)"
                    printError(line)
                }
                printed = s
                lastPrint = now
            }
            if duration > 0 && Double(now - start) / 1e9 >= duration { break }
        }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        let s = last
        let active = lastReceive > firstReceive ? Double(lastReceive - firstReceive) / 1e9 : 0
        var summary = Summary(mode: "sink")
        summary.json.set("connections", s.connected)
        summary.json.set("received", s.received)
        summary.json.set("active_seconds", active)
        summary.json.set("received_per_s", perSecond(s.received, active), decimals: 1)
        summary.json.set("peak_received_per_s", peak, decimals: 1)
        summary.json.set("forwarded", s.forwarded)
        summary.json.set("discarded", s.discarded)
        summary.line("connections", grouped(s.connected))
        summary.line(
            "received",
            "\(grouped(s.received)) msgs, \(rateText(s.received, active)) over \(fixed(active, 1)) active s (peak \(grouped(Int(peak.rounded()))) msgs/s)"
        )
        if forward {
            summary.line("forwarded", "\(grouped(s.forwarded)) msgs, \(grouped(s.discarded)) discarded at unwritable subscribers")
        }
        summary.print(asJSON: json)
    }
}
