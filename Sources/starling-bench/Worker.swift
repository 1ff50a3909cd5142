import Histogram
import MQTTCodec
import NIOCore
import NIOPosix

/// The state of one event loop: its clients, counters and latency histogram. Confined to
/// `loop`: the coordinator reaches it only through `loop.submit` / `loop.execute`, so the hot
/// path takes no lock and shares no cache line with other loops.
final class Worker {
    static let maxLatencyNanos: UInt64 = 60_000_000_000

    let loop: any EventLoop
    let config: RunConfig
    var counters = Counters()
    /// End-to-end latencies in nanoseconds.
    var latency = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: Worker.maxLatencyNanos,
        numberOfSignificantValueDigits: .three)
    /// A zero-capacity buffer that clients copy to reset their output buffer without allocating.
    let emptyBuffer: ByteBuffer

    /// Every client whose handler is in a pipeline; `Client.slot` is its index here.
    private var clients: [Client] = []
    /// Publishers that have their CONNACK.
    private var publishers: [Client] = []
    private(set) var publishing = false
    private var publishStart: UInt64 = 0
    private var pacer: Scheduled<Void>?
    private var housekeeper: Scheduled<Void>?

    init(loop: any EventLoop, config: RunConfig) {
        (self.loop, self.config) = (loop, config)
        self.emptyBuffer = ByteBufferAllocator().buffer(capacity: 0)
    }

    /// Creates one worker on each loop of `group`, bound to it.
    static func make(on group: any EventLoopGroup, config: RunConfig) throws -> [NIOLoopBound<Worker>] {
        var workers: [NIOLoopBound<Worker>] = []
        for loop in group.makeIterator() {
            let bound = try loop.submit {
                let worker = Worker(loop: loop, config: config)
                worker.startHousekeeping()
                return NIOLoopBound(worker, eventLoop: loop)
            }.wait()
            workers.append(bound)
        }
        return workers
    }

    // MARK: Clients

    func register(_ client: Client) {
        client.slot = clients.count
        clients.append(client)
    }

    func unregister(_ client: Client) {
        let slot = client.slot
        guard slot >= 0, slot < clients.count, clients[slot] === client else { return }
        let last = clients.removeLast()
        if slot < clients.count {
            clients[slot] = last
            last.slot = slot
        }
        client.slot = -1
        if let index = publishers.firstIndex(where: { $0 === client }) {
            publishers.remove(at: index)
        }
    }

    /// Called by a publisher on CONNACK: it starts at once if the run is already publishing.
    func publisherConnected(_ client: Client) {
        publishers.append(client)
        if publishing { client.startPublishing(at: publishStart + phase(of: client)) }
    }

    func connect(_ specs: [ClientSpec]) {
        for spec in specs { connect(spec) }
    }

    func connect(_ spec: ClientSpec) {
        counters.connectAttempts += 1
        let bound = NIOLoopBound(self, eventLoop: loop)
        let config = self.config
        ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(
                ChannelOptions.writeBufferWaterMark,
                value: .init(low: config.writeLowWater, high: config.writeHighWater)
            )
            .connectTimeout(config.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Client(worker: bound.value, spec: spec))
                }
            }
            .connect(to: config.address)
            .hop(to: loop)
            .assumeIsolated()
            .whenFailure { _ in self.counters.connectFailed += 1 }
    }

    // MARK: Publishing

    /// Publishers spread their first message over one interval so that rate-limited ones do not
    /// all send in the same tick.
    private func phase(of client: Client) -> UInt64 {
        guard config.rate > 0 else { return 0 }
        let interval = 1e9 / config.rate
        let fraction = Double(client.spec.index % 64) / 64
        return UInt64(interval * fraction)
    }

    func startPublishing(at start: UInt64) {
        publishing = true
        publishStart = start
        for publisher in publishers { publisher.startPublishing(at: start + phase(of: publisher)) }
        if config.rate > 0 { schedulePacer() }
    }

    func stopPublishing() {
        publishing = false
        pacer?.cancel()
        pacer = nil
        for publisher in publishers { publisher.stopPublishing() }
    }

    /// Rate-limited publishers are driven by one 1 ms tick per loop; each sends what is due.
    private func schedulePacer() {
        pacer = loop.assumeIsolated().scheduleTask(in: .milliseconds(1)) { [self] in
            guard publishing else { return }
            let now = monotonicNanos()
            for publisher in publishers { publisher.pace(now: now) }
            schedulePacer()
        }
    }

    /// Once a second: keep-alive pings for idle clients.
    private func startHousekeeping() {
        housekeeper = loop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            let now = monotonicNanos()
            for client in clients { client.housekeeping(now: now) }
            startHousekeeping()
        }
    }

    // MARK: Reporting and shutdown

    func snapshot() -> Counters {
        var result = counters
        result.inflight = 0
        for publisher in publishers { result.inflight += publisher.inflight }
        return result
    }

    /// Sends DISCONNECT on every connection and closes it.
    func closeAll() -> EventLoopFuture<Void> {
        stopPublishing()
        housekeeper?.cancel()
        let all = clients
        let futures = all.map { $0.disconnect() }
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }
}
