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
                    let counter = Self.registered(value.name, in: &state.counters) {
                        registry.makeCounter(descriptor: Self.descriptor(value))
                    }
                    // A counter of the node's own: the registry's copy takes its current total.
                    counter.reset()
                    if let whole = Int64(exactly: value.value) {
                        counter.increment(by: whole)
                    } else {
                        counter.increment(by: value.value)
                    }
                case .gauge:
                    let gauge = Self.registered(value.name, in: &state.gauges) { registry.makeGauge(descriptor: Self.descriptor(value)) }
                    gauge.set(value.value)
                }
            }
            // Emitted under the same lock, so one scrape never shows half of another's values.
            return registry.emitToBuffer()
        }
    }

    /// The metric of `name` in `table`, made (and kept there) on first sight.
    private static func registered<Metric>(_ name: String, in table: inout [String: Metric], make: () -> Metric) -> Metric {
        if let metric = table[name] { return metric }
        let metric = make()
        table[name] = metric
        return metric
    }

    /// The full name is the value's own (its unit, e.g. `_total`, already part of it).
    private static func descriptor(_ value: MetricValue) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: value.name, unitName: "", helpText: value.help)
    }
}
