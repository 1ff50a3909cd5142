public import StarlingCore
import Synchronization

/// The node links of this node as the operations endpoints report them: inbound (peers that
/// dialed us and proved the secret) and outbound (peers we dialed).
public final class PeerLinks: Sendable {
    public typealias Direction = PeerLink.Direction
    public typealias Link = PeerLink

    private let links = Mutex<[String: Link]>([:])
    private let refused = Mutex<UInt64>(0)

    public init() {}

    func update(_ link: Link) {
        links.withLock { $0["\(link.direction.rawValue) \(link.peer)"] = link }
    }

    func remove(peer: String, direction: Direction) {
        _ = links.withLock { $0.removeValue(forKey: "\(direction.rawValue) \(peer)") }
    }

    func countRefusal() { refused.withLock { $0 += 1 } }

    /// Every link, by peer then direction.
    public var all: [Link] {
        links.withLock { Array($0.values) }.sorted { ($0.peer, $0.direction.rawValue) < ($1.peer, $1.direction.rawValue) }
    }

    /// Connections refused because the peer did not prove the cluster secret.
    public var refusals: UInt64 { refused.withLock { $0 } }
}
