public import MQTTCodec
public import NIOCore

/// What a client presents when it connects.
public struct AuthenticationRequest: Sendable {
    public var clientID: String
    public var username: String?
    public var password: ByteBuffer?
    public var remoteAddress: String
    public var version: MQTTProtocolVersion
    /// The connection arrived on a listener bound to a loopback address (127.0.0.0/8, ::1).
    public var onLoopbackListener: Bool

    public init(clientID: String, username: String?, password: ByteBuffer?, remoteAddress: String, version: MQTTProtocolVersion,
                onLoopbackListener: Bool = true) {
        self.clientID = clientID
        self.username = username
        self.password = password
        self.remoteAddress = remoteAddress
        self.version = version
        self.onLoopbackListener = onLoopbackListener
    }
}

/// An authenticator's answer: `.success` or the CONNACK reason code to refuse with
/// (`.badUserNameOrPassword`, `.notAuthorized`, `.banned` …), now or later.
public enum AuthenticationDecision: Sendable {
    case decided(MQTTReasonCode)
    /// Decided off the event loop (a password hash takes milliseconds); the future completes on
    /// the broker's event loop. The client's later packets wait until then.
    case pending(EventLoopFuture<MQTTReasonCode>)
}

/// The authentication port: decides whether a CONNECT is accepted.
public protocol Authenticator: Sendable {
    func authenticate(_ request: AuthenticationRequest) -> AuthenticationDecision
}

/// Accepts everyone: the broker's default (tests, embedding).
public struct AllowAllAuthenticator: Authenticator {
    public init() {}
    public func authenticate(_: AuthenticationRequest) -> AuthenticationDecision { .decided(.success) }
}
