import NIOSSL

extension StarlingConfiguration {
    /// The TLS context of the `mqtts` and `wss` listeners, nil without such listeners. A file
    /// that cannot be used is a configuration error naming its key.
    func makeTLSContext() throws -> NIOSSLContext? {
        guard !tlsListeners.isEmpty || !secureWebSocketListeners.isEmpty || clusterTLS else { return nil }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tlsCertificate)
        } catch {
            throw ConfigurationError(
                key: "tls.certificate", value: tlsCertificate, allowed: "a readable PEM certificate chain (\(error))",
                source: "the configuration")
        }
        guard !chain.isEmpty else {
            throw ConfigurationError(
                key: "tls.certificate", value: tlsCertificate, allowed: "a PEM file with at least one certificate",
                source: "the configuration")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tlsPrivateKey, format: .pem)
        } catch {
            throw ConfigurationError(
                key: "tls.private_key", value: tlsPrivateKey, allowed: "a readable, unencrypted PEM private key (\(error))",
                source: "the configuration")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        if !tlsClientCA.isEmpty {
            do {
                guard try !NIOSSLCertificate.fromPEMFile(tlsClientCA).isEmpty else { throw NIOSSLError.failedToLoadCertificate }
            } catch {
                throw ConfigurationError(
                    key: "tls.client_ca", value: tlsClientCA, allowed: "a readable PEM file of CA certificates (\(error))",
                    source: "the configuration")
            }
            tls.trustRoots = .file(tlsClientCA)
            // Mutual TLS: a certificate signed by these CAs is required; clients have no host name to check.
            tls.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError(
                key: "tls.private_key", value: tlsPrivateKey, allowed: "the private key of tls.certificate (\(error))",
                source: "the configuration")
        }
    }
}

extension StarlingConfiguration {
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
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError(
                key: "cluster.tls", value: "true", allowed: "a TLS client context from tls.client_ca (\(error))",
                source: "the configuration")
        }
    }
}
