import Foundation
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle
import StarlingCore

/// The operations HTTP endpoints, for load balancers, orchestrators and Prometheus:
///
/// - `GET /healthz`: 200 while the node works, 503 when its event loop stops answering.
/// - `GET /readyz`: 200 when every readiness check passes, else 503; a JSON body lists the
///   checks either way (docs/architecture.md, G5: never a static "healthy").
/// - `GET /metrics`: the Prometheus text format.
/// - `/api/v1/...`: the admin API, with a bearer token (`AdminAPI`).
///
/// A `Service`: put it before the broker in the `ServiceGroup`, which shuts services down in
/// reverse order, so `/readyz` answers 503 ("draining") for as long as the broker drains.
public struct OpsServer: Service {
    let host: String
    let port: Int
    let source: any OpsSource
    let logger: Logger
    let onListening: @Sendable (String) -> Void
    /// The admin API (`/api/v1`, see `AdminAPI`), served when a token is set.
    let admin: (source: any AdminSource, token: String)?

    public init(
        host: String, port: Int, source: any OpsSource, admin: (source: any AdminSource, token: String)? = nil, logger: Logger,
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        (self.host, self.port, self.source, self.admin, self.logger, self.onListening) = (host, port, source, admin, logger, onListening)
    }

    public func run() async throws {
        let router = Router()
        let source = self.source
        let exposition = MetricsExposition()

        router.get("healthz") { _, _ -> Response in
            if let problem = await source.liveness() {
                return Self.text(.serviceUnavailable, "unhealthy: \(problem)\n")
            }
            return Self.text(.ok, "ok\n")
        }
        router.get("readyz") { _, _ -> Response in
            let checks = await source.readiness()
            let ready = checks.allSatisfy(\.passing)
            return Self.json(ready ? .ok : .serviceUnavailable, ReadinessReport(status: ready ? "ready" : "not ready", checks: checks))
        }
        router.get("metrics") { _, _ -> Response in
            let bytes = exposition.render(await source.metrics())
            var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            response.headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        }

        if let admin { AdminAPI.add(to: router, source: admin.source, token: admin.token) }

        let onListening = self.onListening
        let logger = self.logger
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                guard let text = ListenAddress(bound: channel.localAddress)?.description else { return }
                logger.notice("listening for HTTP (healthz, readyz, metrics) on \(text)")
                onListening(text)
            },
            logger: logger
        )
        do {
            try await app.run()
        } catch {
            throw OpsServerError(description: "the operations HTTP listener on \(host):\(port) (http.listen) failed: \(error)")
        }
    }

    /// A JSON body (pretty-printed, one trailing newline), as `/readyz` and the admin API answer.
    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)) ?? Data()
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(bytes: body + [0x0A])))
        response.headers[.contentType] = "application/json"
        return response
    }

    private static func text(_ status: HTTPResponse.Status, _ text: String) -> Response {
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(string: text)))
        response.headers[.contentType] = "text/plain; charset=utf-8"
        return response
    }
}

public struct OpsServerError: Error, CustomStringConvertible {
    public var description: String
}

/// The JSON body of `/readyz`.
struct ReadinessReport: Codable {
    var status: String
    var checks: [HealthCheck]
}
