public import Logging
import MQTTCodec
public import NIOCore
public import StarlingCore

/// The broker's `ClusterBus` over the node links. Confined to the broker's event loop, like the
/// broker: the links run on it too.
///
/// - Routes: each node tells every peer, over its outbound link, which filters it has
///   subscribers for — the full set when the link comes up (after a reset), then each change as
///   SUBSCRIBE/UNSUBSCRIBE, acknowledged (SUBACK/UNSUBACK) once applied, so a client's SUBACK
///   means every peer routes to it. A peer's routes are learnt on its inbound link and
///   forgotten when that link drops: they belong to their node and go with it.
/// - Data: a message goes to a peer on the outbound link to it; while that link is not up (a
///   cluster starting, a link re-dialled) it is held for `linkWait`, then dropped, counted and
///   logged (QoS 1/2 messages of persistent sessions are in the store; the loss is that of QoS 0
///   and of clean sessions' copies while the peer stays cut off).
public final class ClusterRouter: ClusterBus, @unchecked Sendable {
    let loop: any EventLoop
    let logger: Logger
    /// Set once the broker exists.
    public weak var broker: (any ClusterInbound)?
    /// The filters each peer has subscribers for.
    let routes = PeerRoutes()
    /// Outbound links that are up, by peer.
    var outbound: [String: ClusterLinkHandler] = [:]
    /// Packets waiting for peers' acknowledgements.
    let acks: PeerAcknowledgements
    /// How long a SUBACK waits for peers that do not answer.
    public var routeAckTimeout: TimeAmount {
        get { acks.timeout }
        set { acks.timeout = newValue }
    }
    /// How long a claim waits for peers that do not answer before it reads the session. The
    /// store decides ownership (the epoch fences a silent holder's writes, G4), so a frozen or
    /// cut-off holder is not waited for; what it committed for the session later reaches the
    /// client through the pickup (`pickUpLostCopies`). A live holder answers within a round trip.
    public var claimAckTimeout = TimeAmount.milliseconds(250)
    /// How long a claim waits for the previous holder's spool replay (`isReplaying`).
    public var replayWait = Duration.seconds(10)
    /// Claims waiting for a batch, and the batches running in each lane: sessions with
    /// subscriptions (true) and without (`ClusterRouter+Claims.swift`).
    var claimQueue: [PendingClaim] = []
    var claimBatchesRunning: [Bool: Int] = [false: 0, true: 0]
    /// The clients of the running batches.
    var claiming: Set<String> = []

    public private(set) var forwarded: UInt64 = 0
    public private(set) var forwardDrops: UInt64 = 0
    /// Live nodes in the last view of the membership table.
    public var liveNodes = 1

    public var statistics: ClusterStatistics {
        var figures = ClusterStatistics()
        figures.nodes = liveNodes
        figures.linksUp = outbound.count
        figures.forwarded = forwarded
        figures.forwardDrops = forwardDrops
        return figures
    }

    /// The partition verdict's state (`ClusterRouter+Partition.swift`).
    var partition = PartitionVerdict()

    /// Messages for peers with routes here but no link from here yet (`hold`).
    var heldForLink: [String: [(publish: MQTTPublish, committed: (() -> Void)?)]] = [:]
    /// How long a message waits for a link to its peer before it is dropped (G7: a node that
    /// knows a peer has subscribers does not drop for want of a link that is not up yet).
    public var linkWait = TimeAmount.seconds(5)
    static let linkWaitLimit = 10_000

    /// Retained changes that arrived while the retained messages were read again.
    private var retainedBuffer: [Message]?
    private var lastDropLog: NIODeadline?

    public init(loop: any EventLoop, logger: Logger) {
        (self.loop, self.logger) = (loop, logger)
        self.acks = PeerAcknowledgements(loop: loop, logger: logger)
    }

    // MARK: ClusterBus (called by the broker)

    public func routesChanged(added: [String], removed: [String], then: @escaping () -> Void) {
        var packets: [(UInt16) -> MQTTPacket] = []
        if !added.isEmpty { packets.append { ClusterLinkHandler.routes(added: added, packetID: $0) } }
        if !removed.isEmpty { packets.append { ClusterLinkHandler.routes(removed: removed, packetID: $0) } }
        broadcast(packets, what: "a route change", then: then)
    }

    /// Sends packets that peers acknowledge (by packet id) on every outbound link; `then` runs
    /// once every peer has acknowledged every packet, lost its link, or `routeAckTimeout` passed.
    func broadcast(
        _ packets: [(UInt16) -> MQTTPacket], what: String, timeout: TimeAmount? = nil,
        answers collect: ((_ packet: Int, MQTTProperties) -> Void)? = nil, then: @escaping () -> Void
    ) {
        guard !outbound.isEmpty, !packets.isEmpty else { return then() }
        let ids = packets.map { _ in allocateID() }
        if let collect {
            for (index, id) in ids.enumerated() { acks.answers[id] = { collect(index, $0) } }
            let done = then
            return broadcastPrepared(ids, packets, what: what, timeout: timeout) { [self] in
                for id in ids { acks.answers[id] = nil }
                done()
            }
        }
        broadcastPrepared(ids, packets, what: what, timeout: timeout, then: then)
    }

    /// Peers that let an acknowledgement time out and have not answered since: broadcasts do
    /// not wait for them (`broadcastPrepared`).
    var silent: Set<String> { acks.silent }

    private func broadcastPrepared(
        _ ids: [UInt16], _ packets: [(UInt16) -> MQTTPacket], what: String, timeout: TimeAmount?,
        then: @escaping () -> Void
    ) {
        // A silent peer (frozen, or its link dead but not yet known so) still gets the packets,
        // but is not waited for again: a claim already waited for it, and the CONNACK that
        // follows would wait `routeAckTimeout` more. It learns everything in full when its link
        // comes up again (`outboundUp`), and is waited for again once it answers anything. A
        // quiet peer (no answer to the link's pings lately) is not waited for at all: the
        // database has decided the claim, and its answer would not come before the timeout.
        let waiting = Set(outbound.filter { !$0.value.isQuiet }.keys).subtracting(acks.silent)
        for link in outbound.values {
            for (id, make) in zip(ids, packets) { link.send(make(id), evenIfSlow: true) }
        }
        guard !waiting.isEmpty else { return then() }
        acks.await(ids, from: waiting, what: what, timeout: timeout, then: then)
    }

    public func peers(matching topic: String) -> (plain: Set<String>, groups: [ShareGroupKey: [String]]) {
        routes.matching(topic)
    }

    @discardableResult
    public func forward(
        _ message: Message, to peer: String, plain: Bool, groups: [ShareGroupKey], deliveries: [RemoteDelivery],
        committed: (() -> Void)?
    ) -> Bool {
        guard let link = outbound[peer] else {
            // No link from here yet (a cluster starting, a link re-dialled): held, in order.
            // Copies for stored sessions are not: their rows are committed, and the holder's
            // pickup delivers them (a copy held past a takeover could arrive twice).
            guard plain || !groups.isEmpty else {
                committed?()
                return true
            }
            let publish = PeerMessages.publish(message, plain: plain, groups: groups, deliveries: [], retainedChange: false, now: .now())
            if !hold(publish, committed: committed, for: peer) {
                drop(message, why: "no link to \(peer) and \(Self.linkWaitLimit) messages held for it already")
                committed?()
            }
            return true
        }
        // A full link: the message still goes (publishers pause until it drains, see
        // `Broker.peersCaughtUp`); a link that stays full longer than `stallLimit` is a peer too
        // slow to wait for, and its plain messages are dropped and counted meanwhile.
        let full = !link.isWritable
        if full && plainStalled(link) && deliveries.isEmpty {
            drop(message, why: "the link to \(peer) has been full for over \(stallLimit.nanoseconds / 1_000_000) ms (a peer too slow)")
            committed?()  // nothing to wait for: the peer will not have it
            return true
        }
        if plain && groups.isEmpty && deliveries.isEmpty && committed == nil && link.readsBatches {
            link.sendBatched(message, now: .now())
            forwarded += 1
        } else {
            let publish = PeerMessages.publish(
                message, plain: plain, groups: groups, deliveries: deliveries, retainedChange: false, now: .now())
            send(publish, committed: committed, to: peer, on: link)
        }
        if full && !stallTimerRunning {
            // Publishers wait at most `stallLimit` for this peer: then they read again, and
            // messages for the peer are dropped while it stays behind.
            stallTimerRunning = true
            loop.scheduleTask(in: stallLimit + .milliseconds(1)) { [self] in
                stallTimerRunning = false
                broker?.peersCaughtUp()
            }
        }
        return !full
    }

    private var stallTimerRunning = false

    /// How long publishers wait for a full link before its peer counts as too slow.
    public var stallLimit = TimeAmount.seconds(1)

    private func plainStalled(_ link: ClusterLinkHandler) -> Bool {
        guard let since = link.fullSince else { return false }
        return NIODeadline.now() - since > stallLimit
    }

    /// A link can take more again: publishers paused for it read again.
    func linkWritable(_ link: ClusterLinkHandler) {
        broker?.peersCaughtUp()
    }

    public func sessionsChanged(_ entries: [SessionDirectoryEntry], then: @escaping () -> Void) {
        let payload = PeerDirectory.encode(entries)
        broadcast(
            [{ .publish(MQTTPublish(topic: PeerDirectory.changed, payload: payload, qos: .atLeastOnce, packetID: $0)) }],
            what: "a session directory change", then: then)
    }

    public func retainedChanged(_ message: Message, then: @escaping () -> Void) {
        var publish = PeerMessages.publish(message, groups: [], retainedChange: true, now: .now())
        broadcast(
            [
                { id in
                    publish.qos = .atLeastOnce
                    publish.packetID = id
                    return .publish(publish)
                }
            ], what: "a retained message", then: then)
    }

    /// The store's side of session ownership (PostgreSQL), set by the server.
    public var ownership: (any SessionOwnershipStore)?

    /// Reads the rows peers committed for this node's connected stored sessions and delivers
    /// those whose copies never came (`PeerRouting.beginPickup`): when a link comes up (after
    /// `pickupDelay`, so copies on their way arrive first) and every `pickupInterval`.
    public func pickUpLostCopies() {
        guard let broker, let ownership else { return }
        let (loop, logger) = (loop, logger)
        broker.beginPickup { clientIDs in
            Task {
                var read: (messages: [StoredMessage], deliveries: [StoredDelivery]) = ([], [])
                do {
                    read = try await ownership.deliveries(of: clientIDs)
                } catch {
                    logger.warning("cannot read the queued messages of this node's sessions: \(error)")
                }
                let found = read
                loop.execute { broker.finishPickup(messages: found.messages, deliveries: found.deliveries) }
            }
        }
    }

    /// Runs a pickup after `delay`, once for every call made meanwhile.
    func schedulePickup(in delay: TimeAmount) {
        guard !pickupScheduled else { return }
        pickupScheduled = true
        loop.scheduleTask(in: delay) { [self] in
            pickupScheduled = false
            pickUpLostCopies()
        }
    }

    private var pickupScheduled = false
    public var pickupDelay = TimeAmount.seconds(1)
    /// How often the server runs a pickup.
    public static let pickupInterval = 10

    /// Holds a message for a peer this node has no link to: sent when the link comes up
    /// (`outboundUp`), dropped and counted after `linkWait` or beyond `linkWaitLimit` messages.
    /// False when it cannot be held.
    func hold(_ publish: MQTTPublish, committed: (() -> Void)?, for peer: String) -> Bool {
        var held = heldForLink[peer] ?? []
        guard held.count < Self.linkWaitLimit else { return false }
        if held.isEmpty {
            loop.scheduleTask(in: linkWait) { [self] in
                guard let expired = heldForLink.removeValue(forKey: peer) else { return }
                forwardDrops += UInt64(expired.count)
                logger.warning(
                    "no link to \(peer) within \(linkWait.nanoseconds / 1_000_000) ms: \(expired.count) message(s) for its subscribers dropped"
                )
                for message in expired { message.committed?() }
            }
        }
        held.append((publish, committed))
        heldForLink[peer] = held
        return true
    }

    /// Sends what was held for `peer` on its link, now up.
    private func sendHeld(to peer: String, on link: ClusterLinkHandler) {
        guard let held = heldForLink.removeValue(forKey: peer) else { return }
        for (publish, committed) in held { send(publish, committed: committed, to: peer, on: link) }
    }

    /// Sends a message to `peer`; with `committed`, as QoS 1, acknowledged by the peer once what
    /// it caused there is committed (`received`), and `committed` runs then.
    private func send(_ message: MQTTPublish, committed: (() -> Void)?, to peer: String, on link: ClusterLinkHandler) {
        var publish = message
        if let committed {
            let id = allocateID()
            publish.qos = .atLeastOnce
            publish.packetID = id
            acks.await([id], from: [peer], what: "a message for its shared groups", then: committed)
        }
        link.send(.publish(publish), evenIfSlow: true)
        forwarded += 1
    }

    private func drop(_ message: Message, why: @autoclosure () -> String) {
        forwardDrops += 1
        let now = NIODeadline.now()
        if lastDropLog.map({ now - $0 > .seconds(10) }) ?? true {
            lastDropLog = now
            logger.warning("\(why()): a message on \(message.topic) for its subscribers was dropped (\(forwardDrops) so far)")
        }
    }

    func allocateID() -> UInt16 { acks.allocateID() }

    // MARK: Events from the links

    /// Our outbound link to `peer` is up: it gets our full route set.
    func outboundUp(_ peer: String, link: ClusterLinkHandler) {
        outbound[peer] = link
        acks.silent.remove(peer)
        link.sendFullRoutes(broker?.localRoutes ?? [])
        let directory = PeerDirectory.encode(broker?.localDirectory ?? [])
        link.send(
            .publish(MQTTPublish(topic: PeerDirectory.full, payload: directory, qos: .atLeastOnce, packetID: allocateID())),
            evenIfSlow: true)
        sendHeld(to: peer, on: link)
        schedulePickup(in: pickupDelay)
    }

    func outboundDown(_ peer: String, link: ClusterLinkHandler) {
        guard outbound[peer] === link else { return }
        outbound[peer] = nil
        acks.peerGone(peer)  // what waits for this peer stops waiting for it
    }

    /// A peer acknowledged a route change (or a claim: its answer carries `properties`).
    func acknowledged(_ packetID: UInt16, by peer: String, properties: MQTTProperties = []) {
        acks.acknowledged(packetID, by: peer, properties: properties)
    }

    /// A peer's link to this node came up: what it set or cleared as retained while it could not
    /// tell this node is read from the store.
    func inboundUp(_ peer: String) {
        guard let ownership, retainedBuffer == nil else { return }
        retainedBuffer = []
        let (loop, logger) = (loop, logger)
        Task {
            let messages: [StoredMessage]?
            do { messages = try await ownership.loadRetained() } catch {
                logger.warning("cannot read the retained messages again after \(peer)'s link came up: \(error)")
                messages = nil
            }
            let snapshot = messages
            loop.execute { [self] in
                let buffered = retainedBuffer ?? []
                retainedBuffer = nil
                guard let broker else { return }
                if let snapshot { broker.replaceRetained(snapshot) }
                for message in buffered { broker.retainedFromPeer(message) }
            }
        }
    }

    /// The peer's inbound link dropped: its routes go with it.
    func inboundDown(_ peer: String) {
        routes.reset(peer)
    }

    /// A batch of plain messages from `peer` (`PeerMessages.batch`), each delivered here in order.
    func receivedBatch(_ payload: ByteBuffer, from peer: String) {
        guard let broker else { return }
        do {
            for message in try PeerMessages.messages(inBatch: payload, now: .now()) {
                broker.receivedFromPeer(message, plain: true, groups: [], deliveries: [], then: nil)
            }
        } catch {
            logger.error("malformed batch of messages from \(peer): \(error)")
        }
    }

    /// A message from a peer; `acknowledge` runs when the peer may be told it was handled
    /// (for a claim, once what this node accepted for the session is committed).
    func received(
        _ publish: MQTTPublish, from peer: String, acknowledge: @escaping () -> Void,
        answer: @escaping (MQTTProperties) -> Void = { _ in }
    ) {
        guard let broker else { return acknowledge() }
        if publish.topic == PeerMessages.lease {
            var payload = publish.payload
            if let age = payload.readInteger(as: Int64.self) { partition.heard(peer, renewedMillisecondsAgo: age, now: .now()) }
            return acknowledge()
        }
        if publish.topic == PeerMessages.sessionClaimed {
            guard let (clientID, epoch) = PeerMessages.claim(from: publish.payload) else {
                logger.error("malformed session claim from \(peer)")
                return acknowledge()
            }
            // The answer carries the deliveries of the session that ended here lately.
            return broker.sessionClaimedElsewhere(clientID, by: peer, epoch: epoch) {
                answer(PeerMessages.ended(broker.endedDeliveries(of: clientID)))
            }
        }
        var acknowledged = false
        defer { if !acknowledged { acknowledge() } }
        switch publish.topic {
        case PeerDirectory.changed, PeerDirectory.full:
            do {
                let entries = try PeerDirectory.decode(publish.payload, owner: peer)
                if publish.topic == PeerDirectory.full {
                    broker.directoryReplaced(owner: peer, entries: entries)
                } else {
                    broker.directoryChanged(entries)
                }
            } catch {
                logger.error("malformed session directory from \(peer): \(error)")
            }
            return
        default:
            break
        }
        let received = PeerMessages.message(from: publish, now: .now())
        if received.retainedChange {
            if retainedBuffer != nil {
                retainedBuffer?.append(received.message)
            } else {
                broker.retainedFromPeer(received.message)
            }
        } else if publish.packetID != nil {
            // The sender waits for what this causes to be committed here (its shared groups).
            acknowledged = true
            broker.receivedFromPeer(
                received.message, plain: received.plain, groups: received.groups, deliveries: received.deliveries,
                then: acknowledge)
        } else {
            broker.receivedFromPeer(
                received.message, plain: received.plain, groups: received.groups, deliveries: received.deliveries, then: nil)
        }
    }
}
