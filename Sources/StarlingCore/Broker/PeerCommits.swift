import MQTTCodec
import NIOCore

/// The peers' commits a publisher's acknowledgement waits for (`PeerRouting.forwardToPeers`): `then`
/// runs once every expected peer has committed, at once when none is expected. Confined to the
/// broker's loop.
final class PeerCommits {
    private var pending = 0
    private var waiter: (() -> Void)?

    func expect() { pending += 1 }

    func done() {
        pending -= 1
        if pending == 0, let waiter {
            self.waiter = nil
            waiter()
        }
    }

    /// Runs `action` when every peer has committed (now, if none is left).
    func then(_ action: @escaping () -> Void) {
        if pending == 0 { action() } else { waiter = action }
    }

    var isSettled: Bool { pending == 0 }
}

/// Which peer serves each shared group of a message (`PeerRouting.placeShared`).
struct SharedPlacement {
    /// The peers' routes matching the message, as `ClusterBus.peers(matching:)` gave them.
    var matching: (plain: Set<String>, groups: [ShareGroupKey: [String]])?
    var peers: [String: [ShareGroupKey]] = [:]
    /// The groups another node serves: not routed here.
    var elsewhere: Set<ShareGroupKey> = []

    var selection: Publishing.SharedGroupSelection { elsewhere.isEmpty ? .all : .except(elsewhere) }
}
