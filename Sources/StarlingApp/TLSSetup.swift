import NIOSSL

extension StarlingConfiguration {
    /// The TLS context of the `mqtts` and `wss` listeners, nil without such listeners. A file
    /// that cannot be used is a configuration error naming its key.
    func makeTLSContext() throws -> NIOSSLContext? {
        guard !tlsListeners.isEmpty || !secureWebSocketListeners.isEmpty else { return nil }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tlsCertificate)
        } catch {
            throw ConfigurationError(key: "tls.certificate", value: tlsCertificate, allowed: "a readable PEM certificate chain (\(error))", source: "the configuration")
        }
        guard !chain.isEmpty else {
            throw ConfigurationError(key: "tls.certificate", value: tlsCertificate, allowed: "a PEM file with at least one certificate", source: "the configuration")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tlsPrivateKey, format: .pem)
        } catch {
            throw ConfigurationError(key: "tls.private_key", value: tlsPrivateKey, allowed: "a readable, unencrypted PEM private key (\(error))", source: "the configuration")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if !tlsClientCA.isEmpty {
            do {
                guard try !NIOSSLCertificate.fromPEMFile(tlsClientCA).isEmpty else { throw NIOSSLError.failedToLoadCertificate }
            } catch {
                throw ConfigurationError(key: "tls.client_ca", value: tlsClientCA, allowed: "a readable PEM file of CA certificates (\(error))", source: "the configuration")
            }
            tls.trustRoots = .file(tlsClientCA)
            // Mutual TLS: a certificate signed by these CAs is required; clients have no host name to check.
            tls.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError(key: "tls.private_key", value: tlsPrivateKey, allowed: "the private key of tls.certificate (\(error))", source: "the configuration")
        }
    }
}
