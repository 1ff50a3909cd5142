import NIOSSL

extension StarlingConfiguration {
    /// The TLS context of the `mqtts` and `wss` listeners, nil without such listeners. A file
    /// that cannot be used is a configuration error naming its key.
    func makeTLSContext() throws -> NIOSSLContext? {
        guard !tlsListeners.isEmpty || !secureWebSocketListeners.isEmpty || clusterTLS else { return nil }
        let chain = try Self.checked("tls.certificate", tlsCertificate, "a readable PEM certificate chain") {
            try NIOSSLCertificate.fromPEMFile(tlsCertificate)
        }
        guard !chain.isEmpty else {
            throw ConfigurationError(
                key: "tls.certificate", value: tlsCertificate, allowed: "a PEM file with at least one certificate",
                source: "the configuration")
        }
        let key = try Self.checked("tls.private_key", tlsPrivateKey, "a readable, unencrypted PEM private key") {
            try NIOSSLPrivateKey(file: tlsPrivateKey, format: .pem)
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if !tlsClientCA.isEmpty {
            try Self.checked("tls.client_ca", tlsClientCA, "a readable PEM file of CA certificates") {
                guard try !NIOSSLCertificate.fromPEMFile(tlsClientCA).isEmpty else { throw NIOSSLError.failedToLoadCertificate }
            }
            tls.trustRoots = .file(tlsClientCA)
            // Mutual TLS: a certificate signed by these CAs is required; clients have no host name to check.
            tls.certificateVerification = .noHostnameVerification
        }
        return try Self.checked("tls.private_key", tlsPrivateKey, "the private key of tls.certificate") {
            try NIOSSLContext(configuration: tls)
        }
    }

    /// The TLS context with which this node dials its peers (`cluster.tls`): peers are
    /// authenticated by the cluster secret; with `tls.client_ca`, their certificates must also be
    /// signed by it (no host name: nodes are dialed by address).
    func makeClusterClientTLSContext() throws -> NIOSSLContext? {
        guard clusterTLS else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if tlsClientCA.isEmpty {
            tls.certificateVerification = .none
        } else {
            tls.trustRoots = .file(tlsClientCA)
            tls.certificateVerification = .noHostnameVerification
        }
        return try Self.checked("cluster.tls", "true", "a TLS client context from tls.client_ca") {
            try NIOSSLContext(configuration: tls)
        }
    }

    /// `body`'s result; its error as a configuration error that names `key`, its `value` and
    /// what is `allowed` (with the library's reason).
    private static func checked<T>(_ key: String, _ value: String, _ allowed: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw ConfigurationError(key: key, value: value, allowed: "\(allowed) (\(error))", source: "the configuration")
        }
    }
}
