import Prometheus
import Synchronization

/// Turns snapshots of the node's values into the Prometheus text format through
/// swift-prometheus' registry. The node keeps its own counters (plain integers on its event
/// loop, nothing shared on the message path); each scrape copies them in.
final class MetricsExposition: Sendable {
    private struct State: ~Copyable {
        var counters: [String: Counter] = [:]
        var gauges: [String: Gauge] = [:]
    }

    private let registry = PrometheusCollectorRegistry()
    private let state = Mutex(State())

    /// The text exposition of `values` (registered on first sight, then updated).
    func render(_ values: [MetricValue]) -> [UInt8] {
        state.withLock { state in
            for value in values {
                switch value.kind {
                case .counter:
                    let counter =
                        state.counters[value.name]
                        ?? {
                            let made = registry.makeCounter(descriptor: Self.descriptor(value))
                            state.counters[value.name] = made
                            return made
                        }()
                    // A counter of the node's own: the registry's copy takes its current total.
                    counter.reset()
                    if let whole = Int64(exactly: value.value) {
                        counter.increment(by: whole)
                    } else {
                        counter.increment(by: value.value)
                    }
                case .gauge:
                    let gauge =
                        state.gauges[value.name]
                        ?? {
                            let made = registry.makeGauge(descriptor: Self.descriptor(value))
                            state.gauges[value.name] = made
                            return made
                        }()
                    gauge.set(value.value)
                }
            }
            // Emitted under the same lock, so one scrape never shows half of another's values.
            return registry.emitToBuffer()
        }
    }

    /// The full name is the value's own (its unit, e.g. `_total`, already part of it).
    private static func descriptor(_ value: MetricValue) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: value.name, unitName: "", helpText: value.help)
    }
}
