import Crypto
import MQTTCodec
import NIOCore
import NIOPosix
import StarlingCore
import Synchronization

/// Who may connect without a user name (`auth.allow_anonymous`).
public enum AnonymousPolicy: String, Sendable, CaseIterable {
    /// On listeners bound to a loopback address only (the default: local tools keep working,
    /// nothing exposed to a network is open).
    case loopback
    case always = "true"
    case never = "false"
}

/// Password authentication against the store's users (docs/architecture.md, "Authentication"). Hashing takes tens of
/// milliseconds by design, so it runs on a thread of its own, never on the broker's event loop;
/// the broker holds the client's later packets meanwhile. A password that verified is
/// remembered (as a SHA-256 of hash and password, not the password), so reconnecting clients
/// cost a hash lookup, not PBKDF2.
final class PasswordAuthenticator: EnhancedAuthenticator {
    private struct State {
        var users: [String: String] = [:]  // username → PHC hash
        var scram: [String: ScramSHA256.Credentials] = [:]
        /// username → SHA-256(hash, 0x00, password) of the last password that verified.
        var verified: [String: SHA256.Digest] = [:]
        /// Checks in progress, by user and fingerprint: a storm of connections with the same
        /// credentials waits for one hash, not one each.
        var inFlight: [String: EventLoopFuture<MQTTReasonCode>] = [:]
        var usersUnknown = false
    }

    let policy: AnonymousPolicy
    private let loop: any EventLoop
    private let hashing: NIOThreadPool
    private let state = Mutex(State())
    /// Verifications queued above this are refused at once (0x89 Server busy): a flood of
    /// wrong passwords delays only other logins, and only this much.
    static let maximumPending = 256
    /// Verified against when the user does not exist, so an unknown name costs the same time
    /// as a wrong password (no user enumeration by timing).
    private let decoy: String

    init(policy: AnonymousPolicy, loop: any EventLoop, hashing: NIOThreadPool) {
        (self.policy, self.loop, self.hashing) = (policy, loop, hashing)
        self.decoy = (try? PasswordHash.make("decoy \(UInt64.random(in: .min ... .max))")) ?? ""
    }

    /// The store's users, replacing the last list (called at start and every few seconds).
    func replaceUsers(_ users: [StoredUser]) {
        state.withLock { state in
            let list = Dictionary(users.map { ($0.username, $0.passwordHash) }, uniquingKeysWith: { _, last in last })
            state.verified = state.verified.filter { list[$0.key] != nil && list[$0.key] == state.users[$0.key] }
            state.users = list
            state.usersUnknown = false
            state.scram = Dictionary(
                users.compactMap { user in user.scram.flatMap(ScramSHA256.parse).map { (user.username, $0) } },
                uniquingKeysWith: { _, last in last })
        }
    }

    var userCount: Int { state.withLock { $0.users.count } }

    /// The users could not be read (a start on the spool while PostgreSQL is away): clients
    /// that give a user name are refused with Server Unavailable until they can be, rather
    /// than let in unchecked.
    func usersAreUnknown() { state.withLock { $0.usersUnknown = true } }

    func authenticate(_ request: AuthenticationRequest) -> AuthenticationDecision {
        let anonymousAllowed = policy == .always || (policy == .loopback && request.isLoopbackClient)
        let password = request.password.map { Array($0.readableBytesView) } ?? []
        enum Plan {
            case decided(MQTTReasonCode)
            case join(EventLoopFuture<MQTTReasonCode>)
            case check(
                EventLoopPromise<MQTTReasonCode>, username: String, hash: String, known: Bool, fingerprint: SHA256.Digest, key: String)
        }
        let plan: Plan = state.withLock { state in
            if state.usersUnknown && request.username != nil { return .decided(.serverUnavailable) }
            // Without users, credentials cannot be checked: the client counts as anonymous.
            guard let username = request.username, !state.users.isEmpty else {
                return .decided(anonymousAllowed ? .success : .notAuthorized)
            }
            let known = state.users[username]
            let hash = known ?? decoy
            let fingerprint = Self.fingerprint(hash, password)
            if known != nil, state.verified[username] == fingerprint { return .decided(.success) }
            let key = "\(username)\u{0}\(fingerprint)"
            if let running = state.inFlight[key] { return .join(running) }
            guard state.inFlight.count < Self.maximumPending else { return .decided(.serverBusy) }
            let promise = loop.makePromise(of: MQTTReasonCode.self)
            state.inFlight[key] = promise.futureResult
            return .check(promise, username: username, hash: hash, known: known != nil, fingerprint: fingerprint, key: key)
        }
        switch plan {
        case .decided(let reason):
            return .decided(reason)
        case .join(let running):
            return .pending(running)
        case .check(let promise, let username, let hash, let known, let fingerprint, let key):
            promise.completeWith(
                hashing.runIfActive(eventLoop: loop) { [self] () -> MQTTReasonCode in
                    guard PasswordHash.verify(password, against: hash), known else { return .badUserNameOrPassword }
                    state.withLock { state in
                        // Remembered only if the user still has this hash (not replaced meanwhile).
                        if state.users[username] == hash { state.verified[username] = fingerprint }
                    }
                    return .success
                })
            promise.futureResult.whenComplete { [self] _ in state.withLock { $0.inFlight[key] = nil } }
            return .pending(promise.futureResult)
        }
    }

    /// SCRAM-SHA-256 (enhanced authentication): cheap HMACs on the broker's loop, no PBKDF2.
    func beginExchange(method: String, request _: AuthenticationRequest) -> (any EnhancedAuthentication)? {
        guard method == ScramSHA256.method else { return nil }
        return ScramSHA256.Exchange(lookup: { [self] name in state.withLock { $0.scram[name] } })
    }

    private static func fingerprint(_ hash: String, _ password: [UInt8]) -> SHA256.Digest {
        var hasher = SHA256()
        hasher.update(data: Array(hash.utf8))
        hasher.update(data: [0])
        hasher.update(data: password)
        return hasher.finalize()
    }
}
