/// The session directory's copy on this node (docs/architecture.md "Sessions across nodes"; G1
/// across nodes): the stored sessions other nodes hold, or that no node holds, with their
/// subscriptions indexed by filter, so a PUBLISH here commits a queue row for each of them; and
/// the local stored sessions changed by the current event, announced with its routes. Owned by
/// the broker, on its loop.
final class SessionDirectory {
    private var entries: [String: SessionDirectoryEntry] = [:]
    private let index = SubscriptionIndex<String, Subscription>()
    /// Local stored sessions changed by the current event (`Broker.takeDirectoryChanges`).
    var changedHere: Set<String> = []

    var isEmpty: Bool { entries.isEmpty }

    subscript(clientID: String) -> SessionDirectoryEntry? { entries[clientID] }

    /// Records `entry`: its subscriptions replace those known for the session; an entry without
    /// subscriptions (the session ended) removes it. Shared subscriptions are not indexed: they
    /// travel as routes (one member per group in the cluster).
    func set(_ entry: SessionDirectoryEntry) {
        if let old = entries[entry.clientID] {
            for subscription in old.subscriptions ?? [] { index.remove(subscription.filter, subscriber: entry.clientID) }
        }
        guard let subscriptions = entry.subscriptions else {
            entries[entry.clientID] = nil
            return
        }
        entries[entry.clientID] = entry
        for subscription in subscriptions where !subscription.filter.isShared {
            index.insert(subscription.filter, subscriber: entry.clientID, value: subscription)
        }
    }

    /// This node now holds `clientID`'s session: the local index takes over.
    func forget(_ clientID: String) {
        set(SessionDirectoryEntry(clientID: clientID, owner: nil, subscriptions: nil))
    }

    /// The sessions `owner` holds.
    func entries(ownedBy owner: String) -> [SessionDirectoryEntry] {
        entries.values.filter { $0.owner == owner }
    }

    /// The sessions with subscriptions matching `topic`, each with its matching subscriptions.
    func matches(_ topic: String) -> [String: [Subscription]] {
        guard !entries.isEmpty else { return [:] }
        var grouped: [String: [Subscription]] = [:]
        for (clientID, subscription) in index.matches(topic).subscriptions { grouped[clientID, default: []].append(subscription) }
        return grouped
    }
}
