import Histogram
import MQTTCodec
import NIOCore
import NIOPosix

/// Drives a run from the main thread: connects clients in phases, starts and stops
/// publishing, and reads the per-loop counters once per tick (never per message).
final class Bench {
    let group: MultiThreadedEventLoopGroup
    let workers: [NIOLoopBound<Worker>]
    let config: RunConfig
    let common: CommonOptions
    private var nextWorker = 0

    init(common: CommonOptions, config: RunConfig) throws {
        raiseOpenFileLimit()
        installSignalHandlers()
        (self.common, self.config) = (common, config)
        group = MultiThreadedEventLoopGroup(numberOfThreads: common.threads)
        workers = try Worker.make(on: group, config: config)
    }

    func snapshot() -> Counters {
        var total = Counters()
        for worker in workers {
            if let counters = try? worker.eventLoop.submit({ worker.value.snapshot() }).wait() {
                total.add(counters)
            }
        }
        return total
    }

    func latency() -> Histogram<UInt64> {
        var total = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: Worker.maxLatencyNanos,
            numberOfSignificantValueDigits: .three)
        for worker in workers {
            if let histogram = try? worker.eventLoop.submit({ worker.value.latency }).wait() {
                total.add(histogram)
            }
        }
        return total
    }

    private func dispatch(_ specs: ArraySlice<ClientSpec>) {
        var perWorker = [[ClientSpec]](repeating: [], count: workers.count)
        for spec in specs {
            perWorker[nextWorker].append(spec)
            nextWorker = (nextWorker + 1) % workers.count
        }
        for (worker, chunk) in zip(workers, perWorker) where !chunk.isEmpty {
            worker.eventLoop.execute { worker.value.connect(chunk) }
        }
    }

    struct PhaseResult {
        var ok = 0
        var failed = 0
        var seconds = 0.0
        var complete = false
    }

    /// Opens `specs` at `rate` per second (0 = all at once) and waits until each has its
    /// CONNACK (and, for subscribers, every SUBACK) or has failed.
    func connect(_ specs: [ClientSpec], rate: Double, label: String) -> PhaseResult {
        let base = snapshot()
        let start = monotonicNanos()
        let subscribers = specs.count(where: { $0.role == .subscriber })
        var dispatched = 0
        var result = PhaseResult()
        var lastPrint = start
        var lastProgress = start
        var lastDone = 0
        var lastSubscribed = 0
        while !interrupted {
            let now = monotonicNanos()
            if dispatched < specs.count {
                let target = rate > 0 ? min(specs.count, Int(Double(now - start) * rate / 1e9) + 1) : specs.count
                if target > dispatched {
                    dispatch(specs[dispatched..<target])
                    dispatched = target
                }
            }
            let s = snapshot()
            result.ok = s.connected - base.connected
            result.failed = s.connectFailed - base.connectFailed
            let subscribed = s.subscribed - base.subscribed
            let lost = s.dropped - base.dropped
            let done = result.ok + result.failed
            result.seconds = Double(monotonicNanos() - start) / 1e9
            if done != lastDone || subscribed != lastSubscribed { lastProgress = now }
            lastDone = done
            lastSubscribed = subscribed
            if dispatched == specs.count && done >= specs.count
                && (subscribers == 0 || subscribed + lost >= min(subscribers, result.ok))
            {
                result.complete = true
                break
            }
            if now - lastProgress > UInt64(config.connectTimeout.nanoseconds) + 20_000_000_000 {
                printError("\(label): no progress for \(config.connectTimeout.nanoseconds / 1_000_000_000 + 20) s, going on")
                break
            }
            if now - lastPrint >= 1_000_000_000 {
                lastPrint = now
                var line = "\(label): \(grouped(result.ok))/\(grouped(specs.count)) connected, \(grouped(result.failed)) failed"
                if subscribers > 0 { line += ", \(grouped(subscribed)) subscribed" }
                printError(line)
            }
            sleep(seconds: 0.01)
        }
        return result
    }

    func startPublishing() -> UInt64 {
        let start = monotonicNanos()
        for worker in workers { worker.eventLoop.execute { worker.value.startPublishing(at: start) } }
        return start
    }

    func stopPublishing() {
        for worker in workers { worker.eventLoop.execute { worker.value.stopPublishing() } }
    }

    /// Prints a progress line every second until `shouldStop` says so, the duration is over,
    /// or the run is interrupted. Returns when it stopped.
    func run(from start: UInt64, duration: Double, connectionsOnly: Bool = false, shouldStop: (Counters) -> Bool) -> UInt64 {
        var previous = snapshot()
        var lastPrint = start
        while true {
            sleep(seconds: 0.01)
            let now = monotonicNanos()
            if interrupted { return now }
            if duration > 0 && Double(now - start) / 1e9 >= duration { return now }
            let s = snapshot()
            if shouldStop(s) { return now }
            if now - lastPrint >= 1_000_000_000 {
                let elapsed = Double(now - start) / 1e9
                if connectionsOnly {
                    printError(
                        "[\(padLeft(fixed(elapsed, 1), 6))s] conns \(grouped(s.connected - s.dropped)) failed \(grouped(s.connectFailed)) dropped \(grouped(s.dropped))"
                    )
                } else {
                    progress(s, previous: previous, seconds: Double(now - lastPrint) / 1e9, elapsed: elapsed)
                }
                previous = s
                lastPrint = now
            }
        }
    }

    func progress(_ s: Counters, previous p: Counters, seconds: Double, elapsed: Double) {
        func rate(_ a: Int, _ b: Int) -> String { grouped(Int((Double(a - b) / seconds).rounded())) }
        var line = "[\(padLeft(fixed(elapsed, 1), 6))s] sent \(rate(s.sent, p.sent))/s acked \(rate(s.acked, p.acked))/s"
        line += " recv \(rate(s.received, p.received))/s | sent \(grouped(s.sent)) acked \(grouped(s.acked))"
        line += " recv \(grouped(s.received)) inflight \(grouped(s.inflight)) | conns \(grouped(s.connected - s.dropped))"
        if s.connectFailed > 0 { line += " failed \(grouped(s.connectFailed))" }
        if s.dropped > 0 { line += " dropped \(grouped(s.dropped))" }
        printError(line)
    }

    /// After publishing stopped: waits for outstanding acknowledgements and deliveries until
    /// `complete` holds, nothing has moved for a second, or `limit` seconds have passed.
    func drain(limit: Double, complete: (Counters) -> Bool) {
        let start = monotonicNanos()
        var last = snapshot()
        var lastChange = start
        while !interrupted {
            if complete(last) { return }
            sleep(seconds: 0.05)
            let now = monotonicNanos()
            let s = snapshot()
            if s.received != last.received || s.acked != last.acked || s.rejected != last.rejected { lastChange = now }
            last = s
            if now - lastChange >= 1_000_000_000 || Double(now - start) / 1e9 >= limit { return }
        }
    }

    func shutdown() {
        var futures: [EventLoopFuture<Void>] = []
        for worker in workers {
            futures.append(worker.eventLoop.flatSubmit { worker.value.closeAll() })
        }
        let all = EventLoopFuture.andAllComplete(futures, on: group.next())
        // Closing is local and quick; do not hang on a broker that stopped reading.
        let deadline = group.next().scheduleTask(in: .seconds(5)) {}
        _ = try? all.or(deadline.futureResult).wait()
        try? group.syncShutdownGracefully()
    }
}

extension EventLoopFuture where Value == Void {
    /// Completes with whichever of the two completes first.
    func or(_ other: EventLoopFuture<Void>) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        whenComplete { _ in promise.succeed() }
        other.whenComplete { _ in promise.succeed() }
        return promise.futureResult
    }
}

// MARK: - Summary

/// The final figures of a run, printed for people or as one JSON object.
struct Summary {
    var mode: String
    var lines: [(String, String)] = []
    var json = JSONObject()

    init(mode: String) {
        self.mode = mode
        json.set("mode", mode)
    }

    mutating func line(_ label: String, _ text: String) { lines.append((label, text)) }

    mutating func addLatency(_ histogram: Histogram<UInt64>) {
        let count = histogram.totalCount
        json.set("latency_count", count)
        func us(_ ns: UInt64) -> Double { Double(ns) / 1000 }
        let keys: [(String, String, Double)] = [("p50", "p50", 50), ("p90", "p90", 90), ("p99", "p99", 99), ("p999", "p99.9", 99.9)]
        guard count > 0 else {
            for (key, _, _) in keys { json.setNull("latency_\(key)_us") }
            json.setNull("latency_max_us")
            line("latency", "none measured")
            return
        }
        var text: [String] = []
        for (key, label, percentile) in keys {
            let value = us(histogram.valueAtPercentile(percentile))
            json.set("latency_\(key)_us", value, decimals: 1)
            text.append("\(label) \(fixed(value, 1))")
        }
        let max = us(histogram.max)
        json.set("latency_max_us", max, decimals: 1)
        text.append("max \(fixed(max, 1))")
        line("latency (µs)", text.joined(separator: "  ") + "  (\(grouped(Int(count))) samples)")
    }

    func print(asJSON: Bool) {
        let width = lines.map(\.0.count).max() ?? 0
        let human =
            ["starling-bench \(mode): summary"]
            + lines.map { "  " + $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 }
        if asJSON {
            for line in human { printError(line) }
            printOut(json.text)
        } else {
            for line in human { printOut(line) }
        }
    }
}

func perSecond(_ count: Int, _ seconds: Double) -> Double { seconds > 0 ? Double(count) / seconds : 0 }

/// "1,234,567 msgs/s".
func rateText(_ count: Int, _ seconds: Double) -> String { "\(grouped(Int(perSecond(count, seconds).rounded()))) msgs/s" }
