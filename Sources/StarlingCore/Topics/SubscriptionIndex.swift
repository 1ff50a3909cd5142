public import MQTTCodec

/// The subscription index: a trie of topic-filter levels that maps a Topic Name to every
/// matching subscription, plain and shared.
///
/// - Each subscriber holds at most one subscription per filter (a re-subscribe replaces it
///   [MQTT-3.8.4-3]); a shared subscription is keyed by share name and filter [MQTT-4.8.2].
/// - Matching walks only the branches that can match: the literal level, `+` and `#`, so its
///   cost depends on the topic's depth and the matches, not on the number of filters.
/// - Readers run concurrently; writers take the lock exclusively for the few microseconds of
///   an insert or removal. The index is safe to share between event loops.
public final class SubscriptionIndex<Subscriber: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    /// A group of a shared subscription: `$share/{name}/{filter}`.
    public struct ShareGroup: Hashable, Sendable {
        public var name: String
        public var filter: String
        public init(name: String, filter: String) {
            (self.name, self.filter) = (name, filter)
        }
    }

    /// What a topic matched: plain subscriptions, and the members of each shared group
    /// (one of whom receives the message).
    public struct Matches: Sendable {
        public var subscriptions: [(subscriber: Subscriber, value: Value)] = []
        public var groups: [(group: ShareGroup, members: [(subscriber: Subscriber, value: Value)])] = []
        public var isEmpty: Bool { subscriptions.isEmpty && groups.isEmpty }
    }

    private final class Node {
        /// Keyed by the level's bytes: no `String` is made for a lookup, and no Unicode
        /// normalization is applied, as matching requires [MQTT-4.7.3-4].
        var children: [LevelKey: Node] = [:]
        var plus: Node?
        var hash: Node?
        var subscribers: [Subscriber: Value] = [:]
        var shared: [String: [Subscriber: Value]] = [:]
        /// The filter this node ends, kept for naming shared groups.
        var filter = ""

        var isEmpty: Bool {
            children.isEmpty && plus == nil && hash == nil && subscribers.isEmpty && shared.isEmpty
        }
    }

    private let lock = ReadWriteLock()
    private let root = Node()
    private var _count = 0

    public init() {}

    /// The number of subscriptions held.
    public var count: Int { lock.withReadLock { _count } }

    /// Adds or replaces `subscriber`'s subscription to `filter`.
    /// - Returns: true when it is new, false when it replaced an existing one.
    @discardableResult
    public func insert(_ filter: MQTTTopicFilter, subscriber: Subscriber, value: Value) -> Bool {
        let levels = MQTTTopic.levels(filter.filter)
        return lock.withWriteLock {
            var node = root
            for level in levels {
                switch level {
                case "+":
                    if node.plus == nil { node.plus = Node() }
                    node = node.plus!
                case "#":
                    if node.hash == nil { node.hash = Node() }
                    node = node.hash!
                default:
                    if let child = node.children[LevelKey(level)] {
                        node = child
                    } else {
                        let child = Node()
                        node.children[LevelKey(level)] = child
                        node = child
                    }
                }
            }
            let previous: Value?
            if let share = filter.shareName {
                node.filter = filter.filter
                previous = node.shared[share, default: [:]].updateValue(value, forKey: subscriber)
            } else {
                previous = node.subscribers.updateValue(value, forKey: subscriber)
            }
            if previous == nil { _count += 1 }
            return previous == nil
        }
    }

    /// Removes `subscriber`'s subscription to `filter`.
    /// - Returns: the removed value, or nil when there was none.
    @discardableResult
    public func remove(_ filter: MQTTTopicFilter, subscriber: Subscriber) -> Value? {
        let levels = MQTTTopic.levels(filter.filter)
        return lock.withWriteLock {
            var path: [(parent: Node, level: Substring)] = []
            var node = root
            for level in levels {
                let next: Node? =
                    switch level {
                    case "+": node.plus
                    case "#": node.hash
                    default: node.children[LevelKey(level)]
                    }
                guard let next else { return nil }
                path.append((node, level))
                node = next
            }
            let removed: Value?
            if let share = filter.shareName {
                removed = node.shared[share]?.removeValue(forKey: subscriber)
                if node.shared[share]?.isEmpty == true { node.shared[share] = nil }
            } else {
                removed = node.subscribers.removeValue(forKey: subscriber)
            }
            guard removed != nil else { return nil }
            _count -= 1
            // Prune the branch of nodes left empty, deepest first.
            var child = node
            for (parent, level) in path.reversed() {
                guard child.isEmpty else { break }
                switch level {
                case "+": parent.plus = nil
                case "#": parent.hash = nil
                default: parent.children[LevelKey(level)] = nil
                }
                child = parent
            }
            return removed
        }
    }

    /// Every subscription whose filter matches `topic`.
    public func matches(_ topic: String) -> Matches {
        let levels = MQTTTopic.levels(topic)
        var result = Matches()
        lock.withReadLock {
            // [MQTT-4.7.2-1] Topics starting with "$" are not matched by a leading wildcard.
            let dollar = topic.utf8.first == UInt8(ascii: "$")
            collect(root, levels[...], depth: 0, blockWildcards: dollar, into: &result)
        }
        return result
    }

    private func collect(_ node: Node, _ levels: ArraySlice<Substring>, depth: Int, blockWildcards: Bool, into result: inout Matches) {
        let wildcardsAllowed = !(blockWildcards && depth == 0)
        // "#" matches the parent level and everything below it [MQTT-4.7.1-1].
        if wildcardsAllowed, let hash = node.hash {
            add(hash, into: &result)
        }
        guard let level = levels.first else {
            add(node, into: &result)
            return
        }
        let rest = levels.dropFirst()
        if let child = node.children[LevelKey(level)] {
            collect(child, rest, depth: depth + 1, blockWildcards: blockWildcards, into: &result)
        }
        if wildcardsAllowed, let plus = node.plus {
            collect(plus, rest, depth: depth + 1, blockWildcards: blockWildcards, into: &result)
        }
    }

    private func add(_ node: Node, into result: inout Matches) {
        for (subscriber, value) in node.subscribers {
            result.subscriptions.append((subscriber, value))
        }
        if !node.shared.isEmpty {
            for (name, members) in node.shared {
                result.groups.append((ShareGroup(name: name, filter: node.filter), members.map { ($0.key, $0.value) }))
            }
        }
    }
}

/// A topic level compared and hashed by its UTF-8 bytes.
struct LevelKey: Hashable {
    let text: Substring

    init(_ text: Substring) { self.text = text }

    static func == (lhs: LevelKey, rhs: LevelKey) -> Bool {
        lhs.text.utf8.elementsEqual(rhs.text.utf8)
    }

    func hash(into hasher: inout Hasher) {
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in text.utf8 { hasher.combine(byte) }
        }
        hasher.combine(text.utf8.count)
    }
}
