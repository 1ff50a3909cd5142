/// Counters published under `$SYS/broker/...` and on `/metrics`.
public struct BrokerStats: Sendable, Equatable {
    public var messagesReceived: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var publishReceived: UInt64 = 0
    public var publishSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// Messages a session could not take (queue full, too large for the client, expired).
    public var messagesDropped: UInt64 = 0
    public var connectionsAccepted: UInt64 = 0
    public var connectionsRefused: UInt64 = 0
    public var protocolErrors: UInt64 = 0
    /// Times the store fell behind and publishers were paused.
    public var storeBacklogs: UInt64 = 0
    /// Commits the store left out because a later claim held the sender's session (fencing).
    public var fencedCommits: UInt64 = 0
    /// Messages delivered from rows peers committed whose copies never arrived (a pickup).
    public var pickedUp: UInt64 = 0
    /// Messages peers forwarded to this node's subscribers.
    public var forwardedIn: UInt64 = 0

    public init() {}
}
