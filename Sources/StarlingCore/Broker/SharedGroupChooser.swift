/// Who gets a shared group's message [MQTT-4.8.2]: the member on this node, or in a cluster the
/// node that serves it, by `mqtt.shared_subscription_strategy`. Keeps each group's round-robin
/// counter and sticky choice (members and nodes apart); owned by the broker, on its loop.
struct SharedGroupChooser {
    let strategy: BrokerConfiguration.SharedStrategy
    private var members: [ShareGroupKey: SharedGroupState] = [:]
    private var nodes: [ShareGroupKey: SharedGroupState] = [:]
    private var random = SystemRandomNumberGenerator()

    init(strategy: BrokerConfiguration.SharedStrategy) {
        self.strategy = strategy
    }

    /// The member of `group` (on this node) that gets `message`; `pool` sorted, nil if empty.
    mutating func member(of group: ShareGroupKey, from pool: [String], message: Message) -> String? {
        guard !pool.isEmpty else { return nil }
        return Self.pick(
            from: pool, strategy: strategy, state: &members[group, default: SharedGroupState()], message: message, random: &random)
    }

    /// The node (of `pool`, sorted: nodes with members) that serves `group`'s `message`.
    mutating func node(for group: ShareGroupKey, from pool: [String], message: Message) -> String? {
        guard !pool.isEmpty else { return nil }
        return Self.pick(
            from: pool, strategy: strategy, state: &nodes[group, default: SharedGroupState()], message: message, random: &random)
    }

    private static func pick(
        from pool: [String], strategy: BrokerConfiguration.SharedStrategy, state: inout SharedGroupState, message: Message,
        random: inout SystemRandomNumberGenerator
    ) -> String? {
        switch strategy {
        case .random, .local:
            return pool.randomElement(using: &random)
        case .roundRobin:
            state.counter &+= 1
            return pool[state.counter % pool.count]
        case .sticky:
            if let sticky = state.sticky, pool.contains(sticky) { return sticky }
            state.sticky = pool.randomElement(using: &random)
            return state.sticky
        case .hashClientID:
            return pool[Int(stableHash(message.publisher) % UInt64(pool.count))]
        case .hashTopic:
            return pool[Int(stableHash(message.topic) % UInt64(pool.count))]
        }
    }
}

/// A shared group's round-robin counter and sticky choice.
struct SharedGroupState {
    var counter = 0
    var sticky: String?
}

/// FNV-1a: a hash that is the same in every process, so `hash_*` strategies are stable.
func stableHash(_ string: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in string.utf8 {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01B3
    }
    return hash
}
