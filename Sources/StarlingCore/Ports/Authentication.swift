public import MQTTCodec
public import NIOCore

/// What a client presents when it connects.
public struct AuthenticationRequest: Sendable {
    public var clientID: String
    public var username: String?
    public var password: ByteBuffer?
    public var remoteAddress: String
    public var version: MQTTProtocolVersion
    /// The client counts as local (`ClientTransport.isLoopbackClient`).
    public var isLoopbackClient: Bool

    public init(
        clientID: String, username: String?, password: ByteBuffer?, remoteAddress: String, version: MQTTProtocolVersion,
        isLoopbackClient: Bool = true
    ) {
        (self.clientID, self.username, self.password, self.remoteAddress) = (clientID, username, password, remoteAddress)
        (self.version, self.isLoopbackClient) = (version, isLoopbackClient)
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

/// One enhanced-authentication exchange (MQTT 5.0 section 4.12), such as SCRAM: it is given
/// the client's Authentication Data step by step, on the broker's event loop.
public protocol EnhancedAuthentication: AnyObject {
    func step(_ data: ByteBuffer?) -> EnhancedAuthenticationStep
}

public enum EnhancedAuthenticationStep {
    /// Answer AUTH 0x18 Continue authentication with this Authentication Data.
    case `continue`(ByteBuffer)
    /// Authenticated: CONNACK (or AUTH 0x00 after a re-authentication) with this data, if any.
    case success(ByteBuffer?)
    /// Refused with this reason code.
    case failure(MQTTReasonCode)
}

extension Authenticator {
    /// Starts an exchange for the Authentication Method `method` of a CONNECT or a
    /// re-authentication; nil when the method is not offered (CONNACK 0x8C).
    public func beginEnhancedAuthentication(method: String, request: AuthenticationRequest) -> (any EnhancedAuthentication)? {
        (self as? any EnhancedAuthenticator)?.beginExchange(method: method, request: request)
    }
}

/// An authenticator that also offers enhanced authentication methods.
public protocol EnhancedAuthenticator: Authenticator {
    func beginExchange(method: String, request: AuthenticationRequest) -> (any EnhancedAuthentication)?
}
