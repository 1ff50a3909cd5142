import Crypto
import CryptoExtras
import Foundation
import MQTTCodec
import NIOCore
import StarlingCore

/// SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5.0 enhanced authentication method: the
/// password never crosses the network, and the client also learns that the server knows it.
/// The store keeps `$scram-sha256$i=ITERATIONS$SALT$STOREDKEY$SERVERKEY` (base64), never the
/// password. Only "n,," (no channel binding) is accepted.
enum ScramSHA256 {
    static let method = "SCRAM-SHA-256"
    /// RFC 7677's minimum; what clients compute once per login, so kept at the common value.
    static let iterations = 4096

    struct Credentials: Equatable {
        var salt: [UInt8]
        var iterations: Int
        var storedKey: [UInt8]
        var serverKey: [UInt8]
    }

    /// The stored form of `password`'s SCRAM credentials, with a random salt.
    static func make(_ password: String) throws -> String {
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max) }
        let c = try credentials(password, salt: salt, iterations: iterations)
        return "$scram-sha256$i=\(c.iterations)$\(b64(c.salt))$\(b64(c.storedKey))$\(b64(c.serverKey))"
    }

    static func credentials(_ password: String, salt: [UInt8], iterations: Int) throws -> Credentials {
        let salted = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32,
            unsafeUncheckedRounds: iterations)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: salted))
        let serverKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: salted))
        return Credentials(salt: salt, iterations: iterations, storedKey: Array(SHA256.hash(data: clientKey)), serverKey: serverKey)
    }

    static func parse(_ stored: String) -> Credentials? {
        let f = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard f.count == 6, f[0].isEmpty, f[1] == "scram-sha256", f[2].hasPrefix("i="), let i = Int(f[2].dropFirst(2)), i > 0,
            let salt = unb64(f[3]), let storedKey = unb64(f[4]), let serverKey = unb64(f[5])
        else { return nil }
        return Credentials(salt: salt, iterations: i, storedKey: storedKey, serverKey: serverKey)
    }

    static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    static func unb64(_ text: Substring) -> [UInt8]? { Data(base64Encoded: String(text)).map(Array.init) }

    /// The server side of one exchange: client-first → server-first → client-final → server-final.
    final class Exchange: EnhancedAuthentication {
        private let lookup: (String) -> Credentials?
        private let serverNonce: String
        private var expected: (username: String, credentials: Credentials?, nonce: String, authMessagePrefix: String)?

        /// `lookup` gives a user's credentials; `serverNonce` is fixed only by tests.
        init(lookup: @escaping (String) -> Credentials?, serverNonce: String? = nil) {
            self.lookup = lookup
            self.serverNonce = serverNonce ?? b64((0..<18).map { _ in UInt8.random(in: .min ... .max) })
        }

        func step(_ data: ByteBuffer?) -> EnhancedAuthenticationStep {
            guard let text = data.map({ String(decoding: $0.readableBytesView, as: UTF8.self) }) else {
                return .failure(.badUserNameOrPassword)
            }
            if let expected {
                self.expected = nil
                return final(text, expected)
            }
            return first(text)
        }

        /// "n,,n=USER,r=CNONCE" → "r=CNONCE+SNONCE,s=SALT,i=N". An unknown user gets a
        /// random salt and fails at the end, like a wrong password.
        private func first(_ message: String) -> EnhancedAuthenticationStep {
            guard message.hasPrefix("n,,") else { return .failure(.badAuthenticationMethod) }  // channel binding is not offered
            let bare = String(message.dropFirst(3))
            let attributes = Self.attributes(bare)
            guard let name = attributes["n"], let clientNonce = attributes["r"], !clientNonce.isEmpty else {
                return .failure(.badUserNameOrPassword)
            }
            let username = name.replacingOccurrences(of: "=2C", with: ",").replacingOccurrences(of: "=3D", with: "=")
            let credentials = lookup(username)
            let salt = credentials?.salt ?? (0..<16).map { _ in UInt8.random(in: .min ... .max) }
            let nonce = clientNonce + serverNonce
            let serverFirst = "r=\(nonce),s=\(b64(salt)),i=\(credentials?.iterations ?? iterations)"
            expected = (username, credentials, nonce, bare + "," + serverFirst)
            return .continue(ByteBuffer(string: serverFirst))
        }

        /// "c=biws,r=NONCE,p=PROOF" → "v=SERVERSIGNATURE".
        private func final(
            _ message: String, _ expected: (username: String, credentials: Credentials?, nonce: String, authMessagePrefix: String)
        )
            -> EnhancedAuthenticationStep
        {
            guard let proofRange = message.range(of: ",p=") else { return .failure(.badUserNameOrPassword) }
            let withoutProof = String(message[..<proofRange.lowerBound])
            let attributes = Self.attributes(withoutProof)
            guard attributes["c"] == "biws", attributes["r"] == expected.nonce,
                let proof = unb64(message[proofRange.upperBound...]), let credentials = expected.credentials,
                proof.count == credentials.storedKey.count
            else { return .failure(.badUserNameOrPassword) }
            let authMessage = Array((expected.authMessagePrefix + "," + withoutProof).utf8)
            let clientSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: credentials.storedKey)))
            let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
            let computed = Array(SHA256.hash(data: clientKey))
            guard zip(computed, credentials.storedKey).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else {
                return .failure(.badUserNameOrPassword)
            }
            let serverSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: credentials.serverKey)))
            return .success(ByteBuffer(string: "v=" + b64(serverSignature)))
        }

        /// "a=1,b=2" → ["a": "1", "b": "2"] (values may hold "=").
        static func attributes(_ text: String) -> [String: String] {
            var result: [String: String] = [:]
            for part in text.split(separator: ",") where part.count >= 2 && part.dropFirst().first == "=" {
                result[String(part.prefix(1))] = String(part.dropFirst(2))
            }
            return result
        }
    }
}
