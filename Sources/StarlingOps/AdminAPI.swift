import Foundation
import Hummingbird
import NIOCore
public import StarlingCore

/// What the admin API asks of the node.
public protocol AdminSource: Sendable {
    /// Every session; nil when the broker does not answer.
    func clients() async -> [ClientSummary]?
    func client(_ clientID: String) async -> ClientSummary?
    /// Disconnects the client (and with `endSession` ends its session); false when unknown.
    func disconnect(_ clientID: String, endSession: Bool) async -> Bool
    /// The cluster's nodes and this node's links; nil when the node runs alone.
    func cluster() async -> ClusterSummary?
}

/// The admin API under `/api/v1`, for `starling ctl` and operators' tools. Every request needs
/// `Authorization: Bearer <http.admin_token>`; without a token configured the API is not served.
enum AdminAPI {
    static func add(to router: Router<BasicRequestContext>, source: any AdminSource, token: String) {
        let api = router.group("api/v1").add(middleware: BearerTokenMiddleware(token: token))
        api.get("clients") { _, _ -> Response in
            guard let clients = await source.clients() else { return error(.serviceUnavailable, "the broker did not answer") }
            return OpsServer.json(.ok, ClientList(clients: clients))
        }
        api.get("nodes") { _, _ -> Response in
            guard let cluster = await source.cluster() else { return error(.notFound, "this node runs alone (no cluster.listen)") }
            return OpsServer.json(.ok, cluster)
        }
        api.get("clients/:id") { _, context -> Response in
            let id = clientID(context)
            guard let client = await source.client(id) else { return error(.notFound, "no client \(id)") }
            return OpsServer.json(.ok, client)
        }
        api.delete("clients/:id") { request, context -> Response in
            let id = clientID(context)
            let endSession = request.uri.queryParameters.get("end_session") == "true"
            guard await source.disconnect(id, endSession: endSession) else { return error(.notFound, "no client \(id)") }
            return Response(status: .noContent)
        }
    }

    private struct ClientList: Encodable {
        var clients: [ClientSummary]
    }

    private struct ErrorBody: Encodable {
        var error: String
    }

    /// Client ids may hold any character: the path segment is percent-decoded.
    private static func clientID(_ context: BasicRequestContext) -> String {
        let raw = context.parameters.get("id") ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        OpsServer.json(status, ErrorBody(error: message))
    }
}

/// Refuses requests without `Authorization: Bearer <token>` (401), compared in constant time.
struct BearerTokenMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: [UInt8]

    init(token: String) {
        self.token = Array(token.utf8)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let given = Array((request.headers[.authorization] ?? "").utf8)
        let prefix = Array("Bearer ".utf8)
        guard given.count == prefix.count + token.count, given.starts(with: prefix),
            zip(given.dropFirst(prefix.count), token).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0
        else {
            var response = AdminAPI.error(.unauthorized, "a valid Authorization: Bearer token (http.admin_token) is required")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }
}
