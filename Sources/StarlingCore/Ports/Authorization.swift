import MQTTCodec

/// What a client asks to do with a topic.
public enum AuthorizationAction: String, Sendable, CaseIterable {
    case publish
    case subscribe
}

/// The authorization port.
public protocol Authorizer: Sendable {
    /// For `.publish`, `topic` is the Topic Name. For `.subscribe` it is a Topic Filter when
    /// subscribing, and the Topic Name of each message when delivering (so a subscription to
    /// `#` never carries a topic the subscriber may not read).
    func isAllowed(_ action: AuthorizationAction, topic: String, clientID: String, username: String?) -> Bool
}

/// An ordered rule list; the first rule that applies decides, and no rule means allow.
public struct RuleAuthorizer: Authorizer, Equatable {
    public struct Rule: Sendable, Equatable {
        public enum Permission: String, Sendable, CaseIterable { case allow, deny }
        public enum Action: String, Sendable, CaseIterable { case publish, subscribe, all }

        public var permission: Permission
        public var action: Action
        /// A topic filter; `%u` and `%c` stand for the user name and the client id.
        public var filter: String
        /// Applies only to this user name, when set.
        public var username: String?
        /// Applies only to this client id, when set.
        public var clientID: String?

        public init(permission: Permission, action: Action, filter: String, username: String? = nil, clientID: String? = nil) {
            (self.permission, self.action, self.filter, self.username, self.clientID) = (permission, action, filter, username, clientID)
        }

        func applies(to action: AuthorizationAction, topic: String, clientID: String, username: String?) -> Bool {
            guard self.action == .all || self.action.rawValue == action.rawValue else { return false }
            if let only = self.clientID, only != clientID { return false }
            if let only = self.username, only != username { return false }
            var pattern = filter
            if pattern.contains("%") {
                // A substituted name holding wildcards must not widen the rule.
                let safeUser = (username ?? "").replacing("+", with: "_").replacing("#", with: "_")
                let safeClient = clientID.replacing("+", with: "_").replacing("#", with: "_")
                pattern = pattern.replacing("%u", with: safeUser).replacing("%c", with: safeClient)
            }
            // A filter that equals the rule's, or a topic (or filter read as a topic) it matches.
            return pattern == topic || MQTTTopic.matches(filter: pattern, topic: topic)
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule] = []) { self.rules = rules }

    public func isAllowed(_ action: AuthorizationAction, topic: String, clientID: String, username: String?) -> Bool {
        for rule in rules where rule.applies(to: action, topic: topic, clientID: clientID, username: username) {
            return rule.permission == .allow
        }
        return true
    }
}
