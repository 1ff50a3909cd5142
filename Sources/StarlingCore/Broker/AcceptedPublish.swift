import MQTTCodec
import NIOCore

/// An acknowledgement that waits for more than the commit (the peers applying a retained
/// change), and those that came after it: PUBACK/PUBREC stay in the order of the PUBLISH
/// packets [MQTT-4.6.0-2].
final class HeldAcknowledgement {
    var ready: Bool
    let send: () -> Void
    init(ready: Bool, send: @escaping () -> Void) {
        (self.ready, self.send) = (ready, send)
    }
}

final class AcknowledgementChain {
    var entries: [HeldAcknowledgement] = []
}

/// Where an accepted PUBLISH went, kept until its commit (`Publishing.committed`).
struct AcceptedPublish {
    var message: Message
    var placement: SharedPlacement
    var servedGroups: Set<ShareGroupKey>
    /// Subscribers it reached here and on peers (0: "no matching subscribers" in 5.0).
    var matched: Int
    /// Copies for other nodes' stored sessions, by holding node.
    var remoteCopies: [String: [RemoteDelivery]] = [:]
    /// Peers serving shared groups commit their members' rows before the acknowledgement.
    let groupsCommitted = PeerCommits()
}
