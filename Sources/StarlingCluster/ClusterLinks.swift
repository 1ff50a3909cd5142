public import Logging
public import NIOCore
import NIOPosix
public import NIOSSL
public import StarlingCore
import Synchronization

/// The node-to-node links: a listener that admits peers proving the cluster secret, and one
/// outbound link to every live peer in the membership table, dialed again when it drops.
public final class ClusterLinks: Sendable {
    public let links = PeerLinks()
    public let router: ClusterRouter
    let nodeID: String
    let secret: String
    let logger: Logger
    let group: any EventLoopGroup
    /// Outbound links by peer id: the address dialed and the channel once connected.
    private let outbound = Mutex<[String: (address: String, channel: (any Channel)?)]>([:])

    /// TLS for the listener and for dialing (`cluster.tls`); nil: plain TCP.
    let serverTLS: NIOSSLContext?
    let clientTLS: NIOSSLContext?
    /// Unsent bytes a link may hold for a slow peer.
    let linkBuffer: Int

    public init(
        nodeID: String, secret: String, group: any EventLoopGroup, router: ClusterRouter, logger: Logger,
        serverTLS: NIOSSLContext? = nil, clientTLS: NIOSSLContext? = nil, linkBuffer: Int = 4 << 20
    ) {
        (self.serverTLS, self.clientTLS, self.linkBuffer, self.router, self.nodeID) = (serverTLS, clientTLS, linkBuffer, router, nodeID)
        (self.secret, self.group, self.logger) = (secret, group, logger)
    }

    /// Binds the cluster listener.
    public func bind(host: String, port: Int) async throws -> any Channel {
        let (nodeID, secret, links, router, logger, tls) = (nodeID, secret, links, router, logger, serverTLS)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ClusterLinkHandler(role: .listener, nodeID: nodeID, secret: secret, links: links, router: router, logger: logger))
                }
            }
            .bind(host: host, port: port).get()
    }

    /// Dials every live peer that has no link yet; forgets links to peers that are gone.
    public func reconcile(with nodes: [NodeRecord]) {
        let peers = nodes.filter { $0.nodeID != nodeID && $0.isLive }
        // A link stays up while it works, even to a node whose lease ran out: a node cut off
        // from the database learns over it that its peers are not (ClusterRouter+Partition),
        // and a dead node's links fail by themselves (closed sockets, unanswered pings). Links
        // to nodes that left go.
        let kept = Set(nodes.filter { $0.nodeID != nodeID && $0.state != .left }.map(\.nodeID))
        let toDial: [NodeRecord] = outbound.withLock { table in
            for (peer, entry) in table where !kept.contains(peer) {
                entry.channel?.close(promise: nil)
                table[peer] = nil
                links.remove(peer: peer, direction: .outbound)
            }
            var dial: [NodeRecord] = []
            for peer in peers {
                if let entry = table[peer.nodeID], entry.address == peer.clusterAddress,
                    entry.channel == nil || entry.channel?.isActive == true
                {
                    continue
                }
                table[peer.nodeID] = (peer.clusterAddress, nil)
                dial.append(peer)
            }
            return dial
        }
        for peer in toDial { dial(peer) }
    }

    private func dial(_ peer: NodeRecord) {
        guard let address = ListenAddress(peer.clusterAddress), address.port > 0 else {
            links.update(
                .init(peer: peer.nodeID, direction: .outbound, address: peer.clusterAddress, up: false, detail: "not a HOST:PORT address"))
            return
        }
        let (nodeID, secret, links, router, logger, tls) = (nodeID, secret, links, router, logger, clientTLS)
        let connecting = ClientBootstrap(group: group)
            .connectTimeout(.seconds(2))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A slow peer: past this many unsent bytes the link is not writable and messages
            // for it are dropped and counted (`ClusterRouter.forward`).
            .channelOption(.writeBufferWaterMark, value: .init(low: linkBuffer / 2, high: linkBuffer))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ClusterLinkHandler(
                            role: .dialer(peer: peer.nodeID), nodeID: nodeID, secret: secret, links: links, router: router, logger: logger))
                }
            }
            .connect(host: address.host, port: address.port)
        connecting.whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                self.outbound.withLock { table in
                    if table[peer.nodeID]?.address == peer.clusterAddress {
                        table[peer.nodeID]?.channel = channel
                    } else {
                        channel.close(promise: nil)
                    }
                }
            case .failure(let error):
                // Dialed again with the next view of the nodes (every second).
                _ = self.outbound.withLock { $0.removeValue(forKey: peer.nodeID) }
                links.update(.init(peer: peer.nodeID, direction: .outbound, address: peer.clusterAddress, up: false, detail: "\(error)"))
            }
        }
    }

    /// Closes every outbound link.
    public func closeAll() {
        let channels = outbound.withLock { table in
            defer { table.removeAll() }
            return table.values.compactMap(\.channel)
        }
        for channel in channels { channel.close(promise: nil) }
    }
}
