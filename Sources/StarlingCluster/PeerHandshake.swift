import Crypto
import NIOCore

/// How two nodes prove the cluster secret to each other without sending it (docs/architecture.md,
/// section 7): a challenge–response in MQTT 5.0 enhanced authentication, framed by our codec.
///
///     dialer   → CONNECT  client id = dialer's node id, Authentication Method = `method`,
///                         Authentication Data = nonce D (32 random bytes)
///     listener → AUTH 0x18  data = nonce L ‖ HMAC(secret, "L", D, L, listener id, dialer id)
///     dialer   → AUTH 0x18  data = HMAC(secret, "D", L, D, dialer id, listener id)
///     listener → CONNACK 0x00 (user property node = listener id), or 0x87 and close
///
/// Each side proves the secret over the other's fresh nonce, so a recorded exchange cannot be
/// replayed, and the proofs are bound to both node ids.
public enum PeerHandshake {
    public static let method = "STARLING-CLUSTER-HMAC-SHA256"
    public static let nonceLength = 32

    public static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// The listener's proof, sent with its nonce.
    public static func listenerProof(secret: String, dialerNonce: [UInt8], listenerNonce: [UInt8], listenerID: String, dialerID: String)
        -> [UInt8]
    {
        proof(secret: secret, role: "L", dialerNonce, listenerNonce, Array(listenerID.utf8), Array(dialerID.utf8))
    }

    /// The dialer's proof, over the listener's nonce.
    public static func dialerProof(secret: String, listenerNonce: [UInt8], dialerNonce: [UInt8], dialerID: String, listenerID: String)
        -> [UInt8]
    {
        proof(secret: secret, role: "D", listenerNonce, dialerNonce, Array(dialerID.utf8), Array(listenerID.utf8))
    }

    /// Each field length-prefixed, so no two different inputs give the same message.
    static func proof(secret: String, role: String, _ fields: [UInt8]...) -> [UInt8] {
        var message = Array("starling-cluster-v1".utf8) + Array(role.utf8)
        for field in fields {
            message += [UInt8(field.count >> 8), UInt8(field.count & 0xFF)] + field
        }
        let key = SymmetricKey(data: Array(secret.utf8))
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// Compares in constant time.
    public static func matches(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}
