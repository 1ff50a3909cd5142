import Logging
import NIOCore
import ServiceLifecycle
import StarlingCluster
import StarlingCore
import StarlingPostgres

/// What the cluster service hands to the broker and the sweeper once the node has joined.
struct JoinedCluster: Sendable {
    let membership: ClusterMembership
    let links: ClusterLinks
    let listener: any Channel
    /// The first id of this node's block (`Broker.firstID(inBlock:)`): the sweeper's tokens.
    let firstToken: Int64
}

/// The node in its cluster (docs/architecture.md "The cluster"): once the broker listens, binds
/// the node-to-node listener, claims the node id (a live node with the same id is a
/// configuration error: exit 2), then renews the lease, gives the lease's word to the router each
/// second (the partition check) and has it pick up lost copies. At its stop, after the broker
/// has drained: leaves the cluster and closes the links.
struct ClusterService: Service {
    let configuration: StarlingConfiguration
    let listen: ListenAddress
    let ownership: PostgresOwnership
    let leaseStore: any MembershipStore
    let group: any EventLoopGroup
    let broker: Broker
    let loop: any EventLoop
    let status: NodeStatus
    /// From the broker: its first MQTT address, once it listens.
    let listening: Handoff<String>
    /// To the broker and the sweeper.
    let joined: Handoff<JoinedCluster>
    let logger: Logger

    func run() async throws {
        let listening = self.listening
        guard let mqttAddress = await cancelWhenGracefulShutdown({ await listening.value() }) else {
            joined.give(nil)
            return
        }
        let cluster: JoinedCluster
        let router: ClusterRouter
        do {
            (cluster, router) = try await join(mqttAddress: mqttAddress)
        } catch {
            joined.give(nil)
            throw error
        }
        status.attach(cluster: cluster.membership, links: cluster.links.links)
        joined.give(cluster)
        let membership = cluster.membership
        let loop = self.loop
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await membership.run() }
            tasks.addTask {
                var seconds = 0
                while (try? await Task.sleep(for: .seconds(1))) != nil {
                    router.leaseChecked(membership.lease)
                    seconds += 1
                    if seconds % ClusterRouter.pickupInterval == 0 { loop.execute { router.pickUpLostCopies() } }
                }
            }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }
        await membership.leave()
        cluster.links.closeAll()
        try? await cluster.listener.close()
    }

    private func join(mqttAddress: String) async throws -> (JoinedCluster, ClusterRouter) {
        let nodeID = configuration.broker.ingest.nodeID
        let router = ClusterRouter(loop: loop, logger: logger)
        let links = ClusterLinks(
            nodeID: nodeID, secret: configuration.clusterSecret, group: group, router: router, logger: logger,
            serverTLS: configuration.clusterTLS ? try configuration.makeTLSContext() : nil,
            clientTLS: try configuration.makeClusterClientTLSContext(), linkBuffer: configuration.clusterLinkBuffer)
        let listener: any Channel
        do {
            listener = try await links.bind(host: listen.host, port: listen.port)
        } catch {
            throw StartupError(message: "cannot listen for the cluster on \(listen) (cluster.listen): \(error)")
        }
        do {
            let membership = try await register(listener: listener, mqttAddress: mqttAddress, links: links, router: router)
            // Ids this node generates never collide with another node's (message ids, sequences).
            let block = try await leaseStore.allocateIDBlock()
            let directory = try await ownership.loadDirectory()
            let (broker, ownership) = (self.broker, self.ownership)
            try await loop.submit {
                broker.generateIDs(inBlock: block)
                router.broker = broker
                router.ownership = ownership
                broker.cluster = router
                broker.directoryChanged(directory)
            }.get()
            let cluster = JoinedCluster(
                membership: membership, links: links, listener: listener, firstToken: Broker.firstID(inBlock: block))
            return (cluster, router)
        } catch {
            try? await listener.close()
            throw error
        }
    }

    /// Takes the data directory and this node's row in the store.
    private func register(
        listener: any Channel, mqttAddress: String, links: ClusterLinks, router: ClusterRouter
    ) async throws -> ClusterMembership {
        let nodeID = configuration.broker.ingest.nodeID
        var advertise = configuration.clusterAdvertise ?? ListenAddress(bound: listener.localAddress)?.description ?? listen.description
        if configuration.clusterAdvertise == nil, ["0.0.0.0", "::"].contains(listen.host), let port = listener.localAddress?.port {
            advertise = ListenAddress(host: StarlingConfiguration.hostName(), port: port).description
        }
        // This process holds the data directory for its life: the node's previous start here is
        // gone, and its row is taken over at once (DataDirectoryLock).
        let directoryLock = try DataDirectoryLock.acquire(directory: configuration.dataDirectory, nodeID: nodeID)
        let incarnation = Int64.random(in: 1...Int64.max)
        let registration = NodeRegistration(
            nodeID: nodeID, incarnation: incarnation, mqttAddress: mqttAddress,
            clusterAddress: advertise, httpAddress: configuration.httpListen?.description,
            predecessor: directoryLock.predecessor)
        let (broker, loop) = (self.broker, self.loop)
        let membership = ClusterMembership(
            registration: registration, store: leaseStore, lease: .milliseconds(Int64(configuration.clusterLeaseTimeout * 1000)),
            logger: logger,
            clientCount: { (try? await loop.submit { broker.connectedClientCount }.get()) ?? 0 })
        membership.onView { nodes in
            links.reconcile(with: nodes)
            let live = nodes.count { $0.isLive }
            loop.execute { router.liveNodes = live }
        }
        do {
            try await membership.join()
        } catch let inUse as ClusterMembership.NodeIDInUse {
            throw ConfigurationError(
                key: "server.node_id", value: "\"\(nodeID)\"", allowed: "an id no live node uses: \(inUse)",
                source: "--node-id or the configuration")
        } catch {
            throw StartupError(message: "cannot join the cluster through the store: \(error)")
        }
        directoryLock.record(nodeID: nodeID, incarnation: incarnation)
        return membership
    }
}

/// The dead-node clean-up (`DeadNodeSweeper`), once the node has joined; it stops with the
/// cluster, after the broker has drained.
struct SweeperService: Service {
    let ownership: PostgresOwnership
    let broker: Broker
    let loop: any EventLoop
    let joined: Handoff<JoinedCluster>
    let logger: Logger

    func run() async {
        let joined = self.joined
        guard let cluster = await cancelWhenGracefulShutdown({ await joined.value() }) else { return }
        let membership = cluster.membership
        let sweeper = DeadNodeSweeper(
            store: ownership, broker: broker, loop: loop, firstToken: cluster.firstToken,
            logger: logger, mayJudge: { membership.heldThroughALease })
        await cancelWhenGracefulShutdown { await sweeper.run() }
    }
}
