/// This node's routes (docs/architecture.md "Cluster"): the filters it has local subscribers for,
/// counted per raw filter (`$share/g/f` included) — the first subscription to a filter adds a
/// route, the last one removes it — and the changes of the current event, announced to the peers
/// together before its SUBACK, UNSUBACK or CONNACK. Owned by the broker, on its loop.
struct RouteTable {
    private var counts: [String: Int] = [:]
    private var additions: Set<String> = []
    private var removals: Set<String> = []

    /// A subscription to `filter` was added; with `announcing` (in a cluster), a new route is
    /// kept for the next announcement. Counted either way: sessions restored before the node
    /// joins a cluster have routes too.
    mutating func add(_ filter: String, announcing: Bool) {
        counts[filter, default: 0] += 1
        guard counts[filter] == 1, announcing else { return }
        if removals.remove(filter) == nil { additions.insert(filter) }
    }

    /// A subscription to `filter` went: the last one removes the route.
    mutating func remove(_ filter: String, announcing: Bool) {
        guard let count = counts[filter] else { return }
        guard count == 1 else {
            counts[filter] = count - 1
            return
        }
        counts[filter] = nil
        guard announcing else { return }
        if additions.remove(filter) == nil { removals.insert(filter) }
    }

    /// The route changes since the last call (a route added and removed within it is neither).
    mutating func takeChanges() -> (added: [String], removed: [String]) {
        defer {
            additions.removeAll()
            removals.removeAll()
        }
        return (Array(additions), Array(removals))
    }

    /// Every route (sent in full when a link to a peer comes up).
    var all: [String] { Array(counts.keys) }
}
