import Foundation
import MQTTCodec
import NIOCore
@testable import StarlingApp
import StarlingCore
import Testing

@Suite("SCRAM-SHA-256")
struct ScramTests {
    /// RFC 7677 section 3: user "user", password "pencil".
    static let salt = Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!)
    static let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

    static func exchange(password: String = "pencil", known: Bool = true) throws -> ScramSHA256.Exchange {
        let credentials = try ScramSHA256.credentials(password, salt: salt, iterations: 4096)
        return ScramSHA256.Exchange(lookup: { known && $0 == "user" ? credentials : nil }, serverNonce: serverNonce)
    }

    static func text(_ step: EnhancedAuthenticationStep) -> String? {
        switch step {
        case .continue(let data): String(decoding: data.readableBytesView, as: UTF8.self)
        case .success(let data?): String(decoding: data.readableBytesView, as: UTF8.self)
        default: nil
        }
    }

    static let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="

    @Test("the RFC 7677 example, byte for byte")
    func rfc7677() throws {
        let exchange = try Self.exchange()
        let first = exchange.step(ByteBuffer(string: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
        #expect(Self.text(first) == "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        let final = exchange.step(ByteBuffer(string: Self.clientFinal))
        guard case .success = final else {
            Issue.record("expected success, got \(final)")
            return
        }
        #expect(Self.text(final) == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    }

    @Test("a proof made with another password, an unknown user, channel binding: refused")
    func refusals() throws {
        for exchange in [try Self.exchange(password: "pen"), try Self.exchange(known: false)] {
            _ = exchange.step(ByteBuffer(string: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
            guard case .failure(let reason) = exchange.step(ByteBuffer(string: Self.clientFinal)) else {
                Issue.record("accepted")
                return
            }
            #expect(reason == .badUserNameOrPassword)
        }
        guard case .failure(let reason) = try Self.exchange().step(ByteBuffer(string: "p=tls-unique,,n=user,r=x")) else {
            Issue.record("accepted")
            return
        }
        #expect(reason == .badAuthenticationMethod)
    }

    @Test("stored credentials round-trip")
    func stored() throws {
        let stored = try ScramSHA256.make("pencil")
        let parsed = try #require(ScramSHA256.parse(stored))
        #expect(parsed == (try ScramSHA256.credentials("pencil", salt: parsed.salt, iterations: parsed.iterations)))
        #expect(ScramSHA256.parse("$scram-sha256$i=x$a$b$c") == nil)
    }
}
