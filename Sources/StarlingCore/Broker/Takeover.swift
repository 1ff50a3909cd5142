import MQTTCodec
import NIOCore

/// Sessions changing hands between nodes (docs/architecture.md "Sessions across nodes"): claims
/// this node makes (`claimThenAccept`), claims of other nodes it yields to
/// (`sessionClaimedElsewhere`), sessions let go without a write, and letting every session go
/// when the node is cut off from the store while its peers are not. Owns the claims in
/// progress, the claims waiting for this node's spool replay, the ended deliveries of sessions
/// let go lately (a claimer asks for them) and the wills of connections let go while cut off.
/// A part of the broker, on its loop; it acts on the broker's sessions and connections.
final class Takeover {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker
    /// Sessions this node is claiming from the cluster.
    var claiming: [String: ClaimInProgress] = [:]
    /// Claims waiting for the end of this node's spool replay.
    private var afterReplay: [() -> Void] = []
    /// The ended deliveries of sessions let go lately, for a claim's answer (`endedDeliveries`).
    private var endedOfLetGo: [String: (sequences: RecentSequences, at: NIODeadline)] = [:]
    /// Wills of connections let go while cut off from the database (their rows are the
    /// survivors' to publish, or this node's once it holds its lease again).
    private var cutOffWills: [(clientID: String, token: Int64, will: MQTTWill)] = []
    /// This node cannot reach the store while a peer can (the partition check's verdict).
    private(set) var cutOff = false

    init(broker: Broker) {
        self.broker = broker
    }

    // MARK: Claims this node makes

    /// Runs `accept` once this node holds `clientID`'s session: at once when it already does or
    /// runs alone; otherwise after claiming it from the store (and from the node that held it).
    /// The client's packets wait meanwhile, in order, as during a password check.
    func claimThenAccept(_ clientID: String, on connection: Connection, _ accept: @escaping () -> Void) {
        // While the store is unreachable only sessions that need no claim get here
        // (`outageRefusal`): they start without one.
        guard let cluster = broker.cluster, broker.sessions[clientID] == nil, !broker.storeSpooling else { return accept() }
        connection.state = .authenticating
        if connection.authentication == nil { connection.authentication = ConnectionAuthentication() }
        connection.pauseReading(.authentication)
        if broker.storeReplaying {
            // This node's spool is being replayed: what it holds of the session may not be in the
            // store yet. The claim waits for the replay (at most the CONNECT timeout) rather than
            // being refused (G7: a node that reaches the store serves claims).
            afterReplay.append { [self] in
                guard connection.state == .authenticating else { return }
                if broker.storeSpooling { return refuse(connection, "the session store cannot be reached to take the session over") }
                claim(clientID, on: connection, through: cluster, accept)
            }
            return
        }
        claim(clientID, on: connection, through: cluster, accept)
    }

    /// The replay of this node's spool ended (the store is direct again, or away again): the
    /// claims that waited for it go on.
    func replayEnded() {
        let waiting = afterReplay
        afterReplay.removeAll()
        for claim in waiting { claim() }
        broker.flush()
    }

    /// A claim that cannot be made: the client is refused (0x88, 3.1.1 rc 3).
    private func refuse(_ connection: Connection, _ message: String) {
        connection.resumeReading(.authentication)
        connection.authentication = nil
        connection.state = .awaitingConnect
        broker.refuse(connection, reason: .serverUnavailable, message: message)
        broker.flush()
    }

    private func claim(_ clientID: String, on connection: Connection, through cluster: any ClusterBus, _ accept: @escaping () -> Void) {
        // From here on, copies for the session wait here instead of going to the old holder;
        // what this node routed to it before is committed before the session is read, as
        // every peer's is (they acknowledge the claim after their commits).
        claiming[clientID] = claiming[clientID] ?? ClaimInProgress()
        // The closures below outlive this call (the writer and the cluster hold them): they keep
        // the broker as well as this part alive, as the broker's own closures did.
        broker.commitCollected { [self, broker] in
            // Unknown to the directory: it may have deliveries.
            let subscribed = broker.peers.directory[clientID].map { !($0.subscriptions ?? []).isEmpty } ?? true
            cluster.claimSession(clientID, subscribed: subscribed) { [self, broker] claim in
                let progress = claiming.removeValue(forKey: clientID) ?? ClaimInProgress()
                guard connection.state == .authenticating else { return }  // closed meanwhile
                // Of two claims of one session at once (two CONNECTs on two nodes), the later
                // epoch owns it: the other node's client is refused, so one node serves it.
                guard let claim, progress.latestRival < claim.epoch else {
                    return refuse(
                        connection,
                        claim == nil
                            ? "the session store cannot be reached to take the session over"
                            : "another node took the session over at the same time (claim \(claim!.epoch) < \(progress.latestRival))")
                }
                if broker.sessions[clientID] == nil {
                    broker.peers.directory.forget(clientID)
                    broker.restoring.restoreSessions(claim.state, now: broker.clock.now())
                    dropEnded(claim.ended, of: clientID)
                    if let session = broker.sessions[clientID], session.isStored { broker.peers.markDirectoryChange(session) }
                    broker.peers.applyClaimBuffer(progress.copies, to: clientID)
                }
                connection.claimEpoch = claim.epoch
                // Peers learn the session's routes before its CONNACK.
                broker.peers.announceRoutes { [broker] in
                    guard connection.state == .authenticating else { return }
                    connection.resumeReading(.authentication)
                    let held = connection.authentication?.held ?? []
                    connection.authentication = nil
                    connection.state = .awaitingConnect
                    accept()
                    for packet in held where connection.state != .closed { broker.handlePacket(packet, on: connection) }
                    broker.commitCollected()
                    broker.flush()
                }
            }
        }
    }

    /// After a claim: deliveries the previous holder ended are not sent again; their rows go.
    private func dropEnded(_ ended: Set<Int64>, of clientID: String) {
        guard !ended.isEmpty, let session = broker.sessions[clientID] else { return }
        let queued = session.queue.compactMap(\.sequence).filter(ended.contains)
        if !queued.isEmpty { session.queue.removeAll { $0.sequence.map(ended.contains) ?? false } }
        var found = queued
        for (id, entry) in session.inflight {
            guard let sequence = entry.outbound.sequence, ended.contains(sequence) else { continue }
            session.inflight[id] = nil
            session.inflightOrder.removeAll { $0 == id }
            found.append(sequence)
        }
        for sequence in found { broker.forgetDelivery(sequence, of: session) }
        for sequence in ended { session.ended.insert(sequence) }
    }

    // MARK: Claims of other nodes

    /// Another node claimed `clientID`'s session: its connection here (if any) gets DISCONNECT
    /// 0x8E [MQTT-3.1.4-3] and the session is let go without a write (it is the other node's
    /// now; the store refuses this node's writes to its row).
    /// `acknowledge` runs once every write this node accepted for the session is committed:
    /// the claiming node reads the session after that, so a message acknowledged here just
    /// before the claim is in the queue it reads (G1 across a takeover).
    /// A claim with an epoch below that of this node's own claim of the session lost to it
    /// (they crossed): it changes nothing here. A node that neither holds nor claims the
    /// session answers at once: it has nothing of the session to commit first (what it ended
    /// of it lately travels in the answer), and a bystander whose own store is slow (a node
    /// just resumed from a freeze) must not hold up every claim in the cluster (issue 20).
    func claimedElsewhere(_ clientID: String, by node: String, epoch: Int64, acknowledge: @escaping () -> Void) {
        guard broker.sessions[clientID] != nil || claiming[clientID] != nil else {
            ownerChanged(clientID, to: node)
            return acknowledge()
        }
        defer { broker.commitCollected(then: acknowledge) }
        if var progress = claiming[clientID] {
            progress.latestRival = max(progress.latestRival, epoch)
            claiming[clientID] = progress
        }
        if let held = broker.sessions[clientID], held.claimEpoch > epoch { return }
        ownerChanged(clientID, to: node)
        guard let session = broker.sessions[clientID] else { return }
        if session.connection != nil {
            broker.logger.info("session taken over by node \(node)", metadata: ["mqtt.client_id": "\(clientID)"])
        }
        letGo(session, to: node, reason: .sessionTakenOver)
        broker.peers.announceRoutes {}
        broker.flush()
    }

    /// The directory's entry of `clientID` names `node` as its owner.
    private func ownerChanged(_ clientID: String, to node: String) {
        guard var entry = broker.peers.directory[clientID] else { return }
        entry.owner = node
        broker.peers.directory.set(entry)
    }

    /// Lets a session go without a write (it is `owner`'s now, or a survivor's to let go): its
    /// subscriptions stay in this node's directory; its connection, if any, is closed with
    /// DISCONNECT `reason` (5.0) and without its will.
    func letGo(_ session: Session, to owner: String?, reason: MQTTReasonCode) {
        broker.sessions[session.clientID] = nil
        if !session.ended.isEmpty { endedOfLetGo[session.clientID] = (session.ended, broker.clock.now()) }
        broker.peers.directory.changedHere.remove(session.clientID)
        if session.isStored {
            broker.peers.directory.set(
                SessionDirectoryEntry(clientID: session.clientID, owner: owner, subscriptions: Array(session.subscriptions.values)))
        }
        session.isStored = false
        broker.lifecycle.removeSubscriptions(of: session)
        session.queue.removeAll()
        session.inflight.removeAll()
        session.inflightOrder.removeAll()
        session.withheldReleases.removeAll()
        session.withheldPublishes.removeAll()
        guard let connection = session.connection else { return }
        session.connection = nil
        connection.session = nil
        connection.publishWillOnClose = false
        // Not before its CONNACK [MQTT-3.2.0-1]: a connection whose CONNACK still waits for
        // its commit is closed without a word.
        if connection.version == .v5 && connection.state == .connected {
            broker.send(.disconnect(MQTTDisconnect(reasonCode: reason)), on: connection)
        }
        broker.close(connection)
    }

    /// The deliveries of `clientID`'s session that ended here lately (held now, or let go within
    /// the last minute): a claim's answer to the node that takes the session over.
    func endedDeliveries(of clientID: String) -> [Int64] {
        if let session = broker.sessions[clientID] { return session.ended.all }
        guard let stashed = endedOfLetGo[clientID], broker.clock.now() - stashed.at < .seconds(60) else { return [] }
        return stashed.sequences.all
    }

    /// Forgets the stashed ended deliveries older than a minute.
    func pruneEndedOfLetGo(now: NIODeadline) {
        guard !endedOfLetGo.isEmpty else { return }
        endedOfLetGo = endedOfLetGo.filter { now - $0.value.at < .seconds(60) }
    }

    // MARK: Cut off from the store

    /// This node lost the database while its peers did not (a partition): the survivors will
    /// let its sessions go and publish its clients' wills from the store, so it lets every
    /// session go now, without a write (DISCONNECT 0x89 Server busy: the clients reconnect, to
    /// a node that can serve them). The wills of connections whose sessions are not stored stay
    /// in the store for the survivors; if this node holds its lease again first, it publishes
    /// those still there itself (`cutOffWills`).
    func cutOffFromTheStore() {
        cutOff = true
        for session in Array(broker.sessions.values) {
            if let connection = session.connection, let token = connection.willToken, let will = session.will {
                connection.willToken = nil
                cutOffWills.append((session.clientID, token, will))
            }
            letGo(session, to: nil, reason: .serverBusy)
        }
        for connection in broker.connections where connection.session == nil && connection.state != .closed {
            broker.close(connection)  // still connecting
        }
        broker.peers.announceRoutes {}
        broker.flush()
    }

    /// Back from being cut off: ready again; the wills of the connections let go meanwhile
    /// are published if the store still has them (no survivor took them).
    func reachesTheStoreAgain() -> [Int64] {
        cutOff = false
        defer { cutOffWills.removeAll() }
        return cutOffWills.map(\.token)
    }
}

/// A claim this node has under way: the copies for the session that arrived (or were routed
/// here) before it was read, applied once it is; the latest epoch of a rival claim of the same
/// session by another node meanwhile.
struct ClaimInProgress {
    var copies: [(message: Message, delivery: RemoteDelivery)] = []
    var latestRival: Int64 = 0
}
