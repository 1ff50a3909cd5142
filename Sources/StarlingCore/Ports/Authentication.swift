public import MQTTCodec
public import NIOCore

/// What a client presents when it connects.
public struct AuthenticationRequest: Sendable {
    public var clientID: String
    public var username: String?
    public var password: ByteBuffer?
    public var remoteAddress: String
    public var version: MQTTProtocolVersion

    public init(clientID: String, username: String?, password: ByteBuffer?, remoteAddress: String, version: MQTTProtocolVersion) {
        self.clientID = clientID
        self.username = username
        self.password = password
        self.remoteAddress = remoteAddress
        self.version = version
    }
}

/// The authentication port: decides whether a CONNECT is accepted.
public protocol Authenticator: Sendable {
    /// Returns `.success` to accept, or the CONNACK reason code to refuse with
    /// (`.badUserNameOrPassword`, `.notAuthorized`, `.banned` …).
    func authenticate(_ request: AuthenticationRequest) -> MQTTReasonCode
}

/// Accepts everyone: the default when no users are configured.
public struct AllowAllAuthenticator: Authenticator {
    public init() {}
    public func authenticate(_: AuthenticationRequest) -> MQTTReasonCode { .success }
}
