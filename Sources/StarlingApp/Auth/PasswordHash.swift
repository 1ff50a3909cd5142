import Crypto
import CryptoExtras
import Foundation

/// Salted PBKDF2 password hashes (docs/architecture.md, "Authentication"), as PHC strings:
/// `$pbkdf2-sha512$i=210000$SALT$HASH`, salt and hash in unpadded base64. 210,000 rounds of
/// HMAC-SHA-512 is OWASP's recommendation for PBKDF2-SHA512: right for passwords people choose,
/// and about 0.14 s of one core per check here. Fleets whose devices hold random secrets may
/// choose fewer rounds per user (`ctl users add --rounds`), so that a reconnect storm of
/// distinct devices is not bounded by hashing (BENCHMARKS.md).
enum PasswordHash {
    static let rounds = 210_000
    static let minimumRounds = 1_000
    static let saltBytes = 16
    static let hashBytes = 64
    static let scheme = "pbkdf2-sha512"

    /// A new hash of `password` with a random salt.
    static func make(_ password: String, rounds: Int = rounds) throws -> String {
        let salt = (0..<saltBytes).map { _ in UInt8.random(in: .min ... .max) }
        let hash = try derive(Array(password.utf8), salt: salt, rounds: rounds)
        return "$\(scheme)$i=\(rounds)$\(base64(salt))$\(base64(hash))"
    }

    /// Whether `password` matches `phc` (compared in constant time); false for a string this
    /// code did not make.
    static func verify(_ password: [UInt8], against phc: String) -> Bool {
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0].isEmpty, fields[1] == scheme, fields[2].hasPrefix("i="),
            let rounds = Int(fields[2].dropFirst(2)), rounds >= 1,
            let salt = unbase64(fields[3]), let expected = unbase64(fields[4]), !expected.isEmpty,
            let actual = try? derive(password, salt: salt, rounds: rounds, length: expected.count)
        else { return false }
        return zip(actual, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private static func derive(_ password: [UInt8], salt: [UInt8], rounds: Int, length: Int = hashBytes) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: password, salt: salt, using: .sha512, outputByteCount: length,
            unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }

    private static func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    private static func unbase64(_ text: Substring) -> [UInt8]? {
        let padded = String(text) + String(repeating: "=", count: (4 - text.count % 4) % 4)
        return Data(base64Encoded: padded).map(Array.init)
    }
}
