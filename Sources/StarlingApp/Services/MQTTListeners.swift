import Logging
import NIOCore
import StarlingCore
import StarlingTransport

/// The node's MQTT listeners as bound (port 0 resolved). A node cut off from the store while its
/// peers are not serves nobody (docs/architecture.md "Cluster"): it closes them, so a balancer's
/// next connection attempt is refused at once and goes to another node instead of being
/// answered 0x88 here until the health check notices; once the node reaches the store again
/// they are bound again on the same addresses.
actor MQTTListeners {
    typealias Bind = @Sendable (ListenAddress, ListenerKind) async throws -> any Channel
    /// Each listener's address as bound, and its kind.
    nonisolated let bound: [(address: ListenAddress, kind: ListenerKind)]
    private(set) var channels: [any Channel]
    private let bind: Bind
    private let status: NodeStatus
    private let logger: Logger

    init(channels: [(ListenAddress, ListenerKind, any Channel)], bind: @escaping Bind, status: NodeStatus, logger: Logger) {
        self.bound = channels.map { ($0.0, $0.1) }
        self.channels = channels.map(\.2)
        (self.bind, self.status, self.logger) = (bind, status, logger)
    }

    /// Opens (`true`) or closes the listeners; a no-op when they already are.
    func set(open: Bool) async {
        if open { await reopen() } else { await close(reason: "cut off from the store while peers reach it") }
    }

    /// Closes every listener (the drain, or a cut-off node).
    func close(reason: String? = nil) async {
        guard !channels.isEmpty else { return }
        for channel in channels { try? await channel.close() }
        channels.removeAll()
        if let reason { logger.warning("MQTT listeners closed: \(reason); connection attempts are refused until they open again") }
    }

    private func reopen() async {
        guard channels.isEmpty else { return }
        var opened: [any Channel] = []
        for (address, kind) in bound {
            do {
                opened.append(try await bind(address, kind))
            } catch {
                logger.error("cannot listen again for \(kind.name) on \(address): \(error); restart the node to serve here again")
            }
        }
        channels = opened
        status.listening(on: opened)
        logger.notice("MQTT listeners open again: \(bound.map { "\($0.kind.scheme)://\($0.address)" }.joined(separator: ", "))")
    }
}
