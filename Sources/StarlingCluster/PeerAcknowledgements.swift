import Logging
import MQTTCodec
import NIOCore

/// The packets this node sent its peers that wait for their acknowledgements (route changes,
/// directory changes, claims, messages for shared groups): which peers each still waits for,
/// what runs once all have answered, and which peers let one time out (`silent`: not waited
/// for again until they answer anything). Owned by the `ClusterRouter`, on the broker's loop.
final class PeerAcknowledgements {
    private let loop: any EventLoop
    private let logger: Logger
    private var pending: [UInt16: (peers: Set<String>, then: () -> Void)] = [:]
    private var nextPacketID: UInt16 = 0
    /// Peers that let an acknowledgement time out and have not answered since.
    var silent: Set<String> = []
    /// Peers' answers to claims, by packet id, while they are awaited.
    var answers: [UInt16: (MQTTProperties) -> Void] = [:]
    /// How long a packet waits for peers that do not answer.
    var timeout = TimeAmount.seconds(2)

    init(loop: any EventLoop, logger: Logger) {
        (self.loop, self.logger) = (loop, logger)
    }

    /// A packet id no packet waiting for an acknowledgement holds.
    func allocateID() -> UInt16 {
        repeat { nextPacketID = nextPacketID == .max ? 1 : nextPacketID + 1 } while pending[nextPacketID] != nil
        return nextPacketID
    }

    /// `then` runs once every peer of `peers` has acknowledged every packet id of `ids`, lost its
    /// link (`peerGone`), or `timeout` (default: `self.timeout`) passed; peers that let it pass
    /// are `silent` from then on.
    func await(_ ids: [UInt16], from peers: Set<String>, what: String, timeout: TimeAmount? = nil, then: @escaping () -> Void) {
        var remaining = ids.count
        let finish = {
            remaining -= 1; if remaining == 0 { then() }
        }
        for id in ids { pending[id] = (peers, finish) }
        loop.assumeIsolated().scheduleTask(in: timeout ?? self.timeout) { [self] in
            for id in ids {
                guard let waiting = pending.removeValue(forKey: id) else { continue }
                logger.warning("peers \(waiting.peers.sorted()) did not acknowledge \(what) in time")
                silent.formUnion(waiting.peers)
                waiting.then()
            }
        }
    }

    /// A peer acknowledged a packet (a claim's answer carries `properties`).
    func acknowledged(_ packetID: UInt16, by peer: String, properties: MQTTProperties) {
        silent.remove(peer)
        if !properties.isEmpty, let collect = answers[packetID] { collect(properties) }
        guard var waiting = pending[packetID] else { return }
        waiting.peers.remove(peer)
        if waiting.peers.isEmpty {
            pending[packetID] = nil
            waiting.then()
        } else {
            pending[packetID] = waiting
        }
    }

    /// The link to `peer` is gone: nothing waits for it any more.
    func peerGone(_ peer: String) {
        for (id, waiting) in pending where waiting.peers.contains(peer) {
            var rest = waiting.peers
            rest.remove(peer)
            if rest.isEmpty {
                pending[id] = nil
                waiting.then()
            } else {
                pending[id] = (rest, waiting.then)
            }
        }
    }
}
