import MQTTCodec
import StarlingCore

/// The filters each peer has subscribers for, learnt on its inbound link (docs/architecture.md,
/// "Cluster"): the subscriber of each route is the peer's node id. A peer's routes are forgotten
/// when it starts sending its full set again, or when its link drops.
final class PeerRoutes {
    private let index = SubscriptionIndex<String, Bool>()
    /// Each peer's filters, to forget them with its link.
    private var filters: [String: Set<String>] = [:]

    /// The peers with plain subscribers for `topic`, and the members of each shared group.
    func matching(_ topic: String) -> (plain: Set<String>, groups: [ShareGroupKey: [String]]) {
        guard !filters.isEmpty else { return ([], [:]) }
        let matches = index.matches(topic)
        var groups: [ShareGroupKey: [String]] = [:]
        for (group, members) in matches.groups { groups[ShareGroupKey(name: group.name, filter: group.filter)] = members.map(\.subscriber) }
        return (Set(matches.subscriptions.map(\.subscriber)), groups)
    }

    /// Forgets every route of `peer`.
    func reset(_ peer: String) {
        for filter in filters.removeValue(forKey: peer) ?? [] {
            if let parsed = try? MQTTTopicFilter(filter) { index.remove(parsed, subscriber: peer) }
        }
    }

    func add(_ added: [MQTTTopicFilter], of peer: String) {
        for filter in added {
            index.insert(filter, subscriber: peer, value: true)
            filters[peer, default: []].insert(filter.raw)
        }
    }

    func remove(_ removed: [MQTTTopicFilter], of peer: String) {
        for filter in removed {
            index.remove(filter, subscriber: peer)
            filters[peer]?.remove(filter.raw)
        }
    }
}
