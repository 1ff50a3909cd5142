import MQTTCodec
import NIOCore
import NIOPosix
@testable import StarlingApp
import StarlingCore
import Testing

@Suite("Password authentication")
struct PasswordAuthenticatorTests {
    static func request(_ username: String?, _ password: String? = nil, loopback: Bool = true) -> AuthenticationRequest {
        AuthenticationRequest(
            clientID: "c", username: username, password: password.map { ByteBuffer(string: $0) },
            remoteAddress: "test", version: .v5, isLoopbackClient: loopback)
    }

    /// Runs `body` with an authenticator on a real event loop and hashing thread.
    static func withAuthenticator(
        _ policy: AnonymousPolicy, users: [(String, String)] = [],
        _ body: (PasswordAuthenticator) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let authenticator = PasswordAuthenticator(policy: policy, loop: group.next(), hashing: pool)
        authenticator.replaceUsers(try users.map { StoredUser(username: $0.0, passwordHash: try PasswordHash.make($0.1)) })
        try await body(authenticator)
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
    }

    /// The decision, waiting for it when it is pending; and whether it was pending.
    static func decide(_ authenticator: PasswordAuthenticator, _ request: AuthenticationRequest) async throws -> (
        MQTTReasonCode, pending: Bool
    ) {
        switch authenticator.authenticate(request) {
        case .decided(let reason): (reason, false)
        case .pending(let future): (try await future.get(), true)
        }
    }

    /// Expects `reason` (and, when given, that it was or was not decided off the loop).
    static func check(
        _ authenticator: PasswordAuthenticator, _ request: AuthenticationRequest, _ reason: MQTTReasonCode,
        pending: Bool? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let (decided, wasPending) = try await decide(authenticator, request)
        #expect(decided == reason, sourceLocation: sourceLocation)
        if let pending { #expect(wasPending == pending, sourceLocation: sourceLocation) }
    }

    @Test(
        "anonymous clients: loopback listeners only by default; always; never",
        arguments: [
            (AnonymousPolicy.loopback, true, MQTTReasonCode.success), (.loopback, false, .notAuthorized),
            (.always, false, .success), (.never, true, .notAuthorized)
        ])
    func anonymous(policy: AnonymousPolicy, loopback: Bool, expected: MQTTReasonCode) async throws {
        try await Self.withAuthenticator(policy) { authenticator in
            try await Self.check(authenticator, Self.request(nil, loopback: loopback), expected)
            // Without users a user name cannot be checked: the client counts as anonymous.
            try await Self.check(authenticator, Self.request("someone", "x", loopback: loopback), expected)
        }
    }

    @Test("a user's password is checked off the loop, then remembered; wrong passwords and unknown users are refused alike")
    func passwords() async throws {
        try await Self.withAuthenticator(.never, users: [("alice", "s3cret")]) { authenticator in
            try await Self.check(authenticator, Self.request("alice", "s3cret"), .success, pending: true)
            try await Self.check(authenticator, Self.request("alice", "s3cret"), .success, pending: false)  // remembered
            try await Self.check(authenticator, Self.request("alice", "wrong"), .badUserNameOrPassword, pending: true)
            try await Self.check(authenticator, Self.request("alice", nil), .badUserNameOrPassword, pending: true)
            try await Self.check(authenticator, Self.request("mallory", "s3cret"), .badUserNameOrPassword, pending: true)
            try await Self.check(authenticator, Self.request(nil), .notAuthorized)
        }
    }

    @Test("a storm of connections with the same credentials waits for one hash")
    func coalesced() async throws {
        try await Self.withAuthenticator(.never, users: [("fleet", "secret")]) { authenticator in
            var futures: [EventLoopFuture<MQTTReasonCode>] = []
            for _ in 0..<20 {
                guard case .pending(let future) = authenticator.authenticate(Self.request("fleet", "secret")) else {
                    Issue.record("decided before any check ran")
                    return
                }
                futures.append(future)
            }
            #expect(Set(futures.map(ObjectIdentifier.init)).count == 1)  // one check, shared
            for future in futures { #expect(try await future.get() == .success) }
            try await Self.check(authenticator, Self.request("fleet", "wrong"), .badUserNameOrPassword, pending: true)  // not joined
        }
    }

    @Test("fewer rounds may be chosen per user; they are read back from the hash")
    func rounds() throws {
        let hash = try PasswordHash.make("device secret", rounds: 1_000)
        #expect(hash.hasPrefix("$pbkdf2-sha512$i=1000$"))
        #expect(PasswordHash.verify(Array("device secret".utf8), against: hash))
    }

    @Test("a new password replaces the remembered one; a deleted user is refused")
    func replaced() async throws {
        try await Self.withAuthenticator(.never, users: [("alice", "old")]) { authenticator in
            try await Self.check(authenticator, Self.request("alice", "old"), .success)
            authenticator.replaceUsers([
                StoredUser(username: "alice", passwordHash: try PasswordHash.make("new")),
                StoredUser(username: "bob", passwordHash: try PasswordHash.make("b"))
            ])
            try await Self.check(authenticator, Self.request("alice", "old"), .badUserNameOrPassword, pending: true)
            try await Self.check(authenticator, Self.request("alice", "new"), .success)
            authenticator.replaceUsers([StoredUser(username: "bob", passwordHash: try PasswordHash.make("b"))])
            try await Self.check(authenticator, Self.request("alice", "new"), .badUserNameOrPassword)
        }
    }

    @Test("hashes are salted PHC strings; what this code did not make never verifies")
    func hashes() throws {
        let a = try PasswordHash.make("pw")
        let b = try PasswordHash.make("pw")
        #expect(a != b)  // salted
        #expect(a.hasPrefix("$pbkdf2-sha512$i=210000$"))
        #expect(PasswordHash.verify(Array("pw".utf8), against: a))
        #expect(!PasswordHash.verify(Array("pw ".utf8), against: a))
        for broken in ["", "pw", "$pbkdf2-sha256$i=1$AAAA$AAAA", "$pbkdf2-sha512$i=x$AAAA$AAAA", "$pbkdf2-sha512$i=1$AAAA$", a + "$"] {
            #expect(!PasswordHash.verify(Array("pw".utf8), against: broken), "\(broken)")
        }
    }
}
