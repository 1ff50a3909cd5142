import Logging
import MQTTCodec
import NIOCore
import StarlingCore

/// One node link, either side: frames packets with our codec, runs the handshake
/// (`PeerHandshake`), then carries routes and messages (`ClusterRouter`) and keeps the link
/// alive with PINGREQ/PINGRESP. The dialer is the MQTT client of the link: it sends its routes
/// (SUBSCRIBE/UNSUBSCRIBE) and messages (PUBLISH); the listener acknowledges.
final class ClusterLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role {
        /// We accepted the connection: the peer must prove the secret first.
        case listener
        /// We dialed `peer` (its node id as the membership table names it).
        case dialer(peer: String)
    }

    private enum State {
        case awaitingConnect
        case awaitingProof(peer: String, dialerNonce: [UInt8], listenerNonce: [UInt8])
        case awaitingChallenge(nonce: [UInt8])
        case awaitingConnAck(peer: String)
        case up(peer: String)
        case closed
    }

    private let role: Role
    private let nodeID: String
    private let secret: String
    private let links: PeerLinks
    private let router: ClusterRouter
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var state: State
    private var reader: MQTTPacketReader
    private var pinger: RepeatedTask?

    init(role: Role, nodeID: String, secret: String, links: PeerLinks, router: ClusterRouter, logger: Logger) {
        (self.role, self.nodeID, self.secret, self.links, self.router, self.logger) = (role, nodeID, secret, links, router, logger)
        // A forwarded message may be as large as any client's packet, plus our properties.
        self.reader = MQTTPacketReader(
            decoder: MQTTPacketDecoder(
                role: { if case .listener = role { .server } else { .client } }(),
                version: .v5, maximumPacketSize: 268_435_455))
        switch role {
        case .listener: state = .awaitingConnect
        case .dialer: state = .awaitingChallenge(nonce: PeerHandshake.nonce())
        }
    }

    private var peerAddress = "unknown"

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        peerAddress = ListenAddress(bound: context.channel.remoteAddress)?.description ?? "unknown"
        if case .awaitingChallenge(let nonce) = state {
            send(
                .connect(
                    MQTTConnect(
                        version: .v5, clientID: nodeID, cleanStart: true, keepAlive: 0,
                        properties: [
                            .authenticationMethod(PeerHandshake.method), .authenticationData(ByteBuffer(bytes: nonce))
                        ])), context: context)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard reader.receive(&bytes) else { return }  // a read further up the stack decodes them
        defer { reader.finish(allocator: context.channel.allocator) }
        do {
            while let packet = try reader.next() {
                handle(packet, context: context)
                if case .closed = state { return }
            }
        } catch {
            return refuse("malformed packet on a node link: \(error)", context: context)
        }
    }

    private func handle(_ packet: MQTTPacket, context: ChannelHandlerContext) {
        if case .up(let peer) = state {
            handleTraffic(packet, from: peer, context: context)
        } else {
            handleHandshake(packet, context: context)
        }
    }

    /// The cluster handshake (PeerHandshake): a CONNECT with the dialer's nonce, an AUTH with the
    /// listener's nonce and proof, an AUTH with the dialer's proof, a CONNACK.
    private func handleHandshake(_ packet: MQTTPacket, context: ChannelHandlerContext) {
        switch (state, packet) {
        case (.awaitingConnect, .connect(let connect)):
            guard connect.version == .v5, connect.properties.authenticationMethod == PeerHandshake.method,
                let nonce = connect.properties.authenticationData?.bytes, nonce.count == PeerHandshake.nonceLength,
                !connect.clientID.isEmpty
            else {
                return refuse("not a node of this cluster (no cluster handshake in its CONNECT)", context: context)
            }
            let listenerNonce = PeerHandshake.nonce()
            let proof = PeerHandshake.listenerProof(
                secret: secret, dialerNonce: nonce, listenerNonce: listenerNonce,
                listenerID: nodeID, dialerID: connect.clientID)
            state = .awaitingProof(peer: connect.clientID, dialerNonce: nonce, listenerNonce: listenerNonce)
            send(
                .auth(
                    MQTTAuth(
                        reasonCode: .continueAuthentication,
                        properties: [
                            .authenticationMethod(PeerHandshake.method), .authenticationData(ByteBuffer(bytes: listenerNonce + proof))
                        ])), context: context)
        case (.awaitingProof(let peer, let dialerNonce, let listenerNonce), .auth(let auth)):
            let expected = PeerHandshake.dialerProof(
                secret: secret, listenerNonce: listenerNonce, dialerNonce: dialerNonce,
                dialerID: peer, listenerID: nodeID)
            guard let proof = auth.properties.authenticationData?.bytes, PeerHandshake.matches(proof, expected) else {
                return refuse("node \(peer) did not prove the cluster secret", context: context)
            }
            send(
                .connack(
                    MQTTConnAck(
                        sessionPresent: false, reasonCode: .success,
                        properties: [.userProperty("node", nodeID), .userProperty(PeerMessages.readsBatches, "1")])),
                context: context)
            linkUp(peer: peer, context: context)
        case (.awaitingChallenge(let nonce), .auth(let auth)):
            let data = auth.properties.authenticationData?.bytes ?? []
            guard case .dialer(let peer) = role, data.count > PeerHandshake.nonceLength else {
                return refuse("the peer's answer carries no challenge", context: context)
            }
            let listenerNonce = Array(data.prefix(PeerHandshake.nonceLength))
            let expected = PeerHandshake.listenerProof(
                secret: secret, dialerNonce: nonce, listenerNonce: listenerNonce,
                listenerID: peer, dialerID: nodeID)
            guard PeerHandshake.matches(Array(data.dropFirst(PeerHandshake.nonceLength)), expected) else {
                return refuse("\(peer) at \(peerAddress) did not prove the cluster secret", context: context)
            }
            state = .awaitingConnAck(peer: peer)
            let proof = PeerHandshake.dialerProof(
                secret: secret, listenerNonce: listenerNonce, dialerNonce: nonce, dialerID: nodeID, listenerID: peer)
            send(
                .auth(
                    MQTTAuth(
                        reasonCode: .continueAuthentication,
                        properties: [
                            .authenticationMethod(PeerHandshake.method), .authenticationData(ByteBuffer(bytes: proof))
                        ])), context: context)
        case (.awaitingConnAck(let peer), .connack(let ack)):
            guard ack.reasonCode == .success else { return refuse("\(peer) refused this node: \(ack.reasonCode)", context: context) }
            readsBatches = ack.properties.contains { $0 == .userProperty(PeerMessages.readsBatches, "1") }
            linkUp(peer: peer, context: context)
        default:
            refuse("unexpected \(packet.type) during the cluster handshake", context: context)
        }
    }

    /// What a peer sends on a link that is up: pings, messages and claims (PUBLISH), routes
    /// (SUBSCRIBE, UNSUBSCRIBE) and the acknowledgements of this node's own.
    private func handleTraffic(_ packet: MQTTPacket, from peer: String, context: ChannelHandlerContext) {
        switch packet {
        case .pingreq:
            send(.pingresp, context: context)
        case .pingresp:
            break
        case .publish(let publish):
            let answer = { [self] (properties: MQTTProperties) in
                if let id = publish.packetID { send(.puback(MQTTAck(packetID: id, properties: properties)), context: context) }
            }
            if publish.topic == PeerMessages.batch {
                router.receivedBatch(publish.payload, from: peer)
            } else if publish.topic == PeerMessages.resetRoutes {
                router.routes.reset(peer)
                answer([])
            } else {
                router.received(publish, from: peer, acknowledge: { answer([]) }, answer: answer)
            }
        case .subscribe(let subscribe):
            router.routes.add(subscribe.subscriptions.map(\.filter), of: peer)
            send(
                .suback(MQTTSubAck(packetID: subscribe.packetID, reasonCodes: subscribe.subscriptions.map { _ in .grantedQoS0 })),
                context: context)
        case .unsubscribe(let unsubscribe):
            router.routes.remove(unsubscribe.filters, of: peer)
            send(
                .unsuback(MQTTUnsubAck(packetID: unsubscribe.packetID, reasonCodes: unsubscribe.filters.map { _ in .success })),
                context: context)
        case .suback(let ack):
            router.acknowledged(ack.packetID, by: peer)
        case .unsuback(let ack):
            router.acknowledged(ack.packetID, by: peer)
        case .puback(let ack):
            router.acknowledged(ack.packetID, by: peer, properties: ack.properties)
        default:
            refuse("unexpected \(packet.type) on a node link", context: context)
        }
    }

    private var direction: PeerLinks.Direction {
        if case .listener = role { .inbound } else { .outbound }
    }

    private func linkUp(peer: String, context: ChannelHandlerContext) {
        state = .up(peer: peer)
        links.update(.init(peer: peer, direction: direction, address: peerAddress, up: true, detail: nil))
        logger.notice("cluster link \(direction.rawValue) \(peer) (\(peerAddress)) is up")
        if case .dialer = role { router.outboundUp(peer, link: self) } else { router.inboundUp(peer) }
        // A silent peer (stopped, cut off) is found by its missing packets: TCP alone may take
        // minutes to notice. The dialer pings (a client's PINGREQ); the listener answers.
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        heardAt = context.eventLoop.now
        pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: Self.pingInterval, delay: Self.pingInterval) { task in
            handler.value.tick(peer: peer, channel: channel, task: task)
        }
    }

    /// How often the dialer pings: a peer that answers nothing for `quietAfter` (a frozen
    /// process, a cut route) is not waited for by claims (`ClusterRouter.broadcast`), and a link
    /// silent for `closeAfterTicks` pings is closed.
    static let pingInterval = TimeAmount.milliseconds(200)
    static let quietAfter = TimeAmount.milliseconds(500)
    static let closeAfterTicks = 15

    /// Ticks since the peer last sent anything, and when it last did.
    private var silentTicks = 0
    private var heardAt = NIODeadline.uptimeNanoseconds(0)

    /// Nothing from the peer for `quietAfter` (two pings unanswered): it is frozen or cut off,
    /// or so slow that a claim's wait for it would end on the timeout anyway (issue 20: the
    /// database decides ownership, nobody waits for a silent node).
    var isQuiet: Bool {
        guard let context else { return true }
        return context.eventLoop.now - heardAt > Self.quietAfter
    }

    private func tick(peer: String, channel: any Channel, task: RepeatedTask) {
        silentTicks += 1
        if silentTicks > Self.closeAfterTicks {
            logger.warning("cluster link \(direction.rawValue) \(peer) is silent; closing it")
            channel.close(promise: nil)
            return task.cancel()
        }
        guard case .dialer = role else { return }
        var buffer = channel.allocator.buffer(capacity: 2)
        MQTTPacket.pingreq.encode(into: &buffer, version: .v5)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        silentTicks = 0  // anything from the peer shows it is alive
        heardAt = context.eventLoop.now
        router.broker?.peerReadComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        if case .up(let peer) = state {
            links.update(.init(peer: peer, direction: direction, address: peerAddress, up: false, detail: "connection closed"))
            logger.warning("cluster link \(direction.rawValue) \(peer) (\(peerAddress)) is down")
            if case .dialer = role { router.outboundDown(peer, link: self) } else { router.inboundDown(peer) }
        }
        self.context = nil
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func refuse(_ reason: String, context: ChannelHandlerContext) {
        if case .listener = role {
            links.countRefusal()
            logger.warning("refused cluster peer \(peerAddress): \(reason)")
            if case .awaitingProof = state {
                send(.connack(MQTTConnAck(sessionPresent: false, reasonCode: .notAuthorized)), context: context)
            }
        } else {
            logger.warning("cluster link to \(peerAddress) failed: \(reason)")
            if case .dialer(let peer) = role {
                links.update(.init(peer: peer, direction: .outbound, address: peerAddress, up: false, detail: reason))
            }
        }
        state = .closed
        context.close(promise: nil)
    }

    // MARK: Sending (the router calls these on the loop)

    /// Writes a packet; the flush follows at the end of this turn of the loop, so a burst of
    /// forwarded messages shares one system call. A link that cannot take more (its peer is
    /// slow) refuses the packet, which is counted by the caller: a slow peer never holds the
    /// publisher back.
    @discardableResult
    func send(_ packet: MQTTPacket, evenIfSlow: Bool = false) -> Bool {
        guard let context, evenIfSlow || context.channel.isWritable else { return false }
        writeBatch(context)  // what was gathered before goes first: the link keeps the order
        write(packet, on: context)
        scheduleFlush(context)
        return true
    }

    /// Whether the peer reads batches (its CONNACK said so): plain messages then go in one
    /// PUBLISH per turn of the loop (`PeerMessages.batch`) instead of one each.
    var readsBatches = false
    /// The plain messages gathered in this turn of the loop.
    private var batch: ByteBuffer?
    /// A batch this large goes at once rather than at the end of the turn.
    static let batchLimit = 64 * 1024

    /// Adds a plain message to this turn's batch (only when `readsBatches`).
    func sendBatched(_ message: Message, now: NIODeadline) {
        guard let context else { return }
        // Taken out while it grows, so the append does not copy it.
        var buffer = batch ?? context.channel.allocator.buffer(capacity: 4096)
        batch = nil
        PeerMessages.appendToBatch(message, now: now, to: &buffer)
        batch = buffer
        if buffer.readableBytes >= Self.batchLimit { writeBatch(context) }
        scheduleFlush(context)
    }

    private func writeBatch(_ context: ChannelHandlerContext) {
        guard let payload = batch else { return }
        batch = nil
        write(.publish(MQTTPublish(topic: PeerMessages.batch, payload: payload, qos: .atMostOnce)), on: context)
    }

    /// The flush (and the batch before it) at the end of this turn of the loop, so a burst of
    /// forwarded messages shares one system call.
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            guard let context = self.context else { return }
            writeBatch(context)
            context.flush()
        }
    }

    static func routes(added filters: [String], packetID: UInt16) -> MQTTPacket {
        let subscriptions = filters.compactMap { try? MQTTTopicFilter($0) }.map { MQTTSubscription(filter: $0, qos: .atMostOnce) }
        return .subscribe(MQTTSubscribe(packetID: packetID, subscriptions: subscriptions))
    }

    static func routes(removed filters: [String], packetID: UInt16) -> MQTTPacket {
        .unsubscribe(MQTTUnsubscribe(packetID: packetID, filters: filters.compactMap { try? MQTTTopicFilter($0) }))
    }

    static func claimed(_ clientID: String, epoch: Int64, packetID: UInt16) -> MQTTPacket {
        .publish(
            MQTTPublish(
                topic: PeerMessages.sessionClaimed, payload: PeerMessages.claim(clientID, epoch: epoch), qos: .atLeastOnce,
                packetID: packetID))
    }

    /// The whole route set: a reset, then the filters in packets of at most 1,000.
    func sendFullRoutes(_ filters: [String]) {
        send(.publish(MQTTPublish(topic: PeerMessages.resetRoutes, payload: ByteBuffer(), qos: .atMostOnce)), evenIfSlow: true)
        for start in stride(from: 0, to: filters.count, by: 1000) {
            send(
                Self.routes(added: Array(filters[start..<min(start + 1000, filters.count)]), packetID: router.allocateID()),
                evenIfSlow: true)
        }
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }
    /// Since when the link has been full (not writable); nil while it takes more.
    private(set) var fullSince: NIODeadline?

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            fullSince = nil
            router.linkWritable(self)
        } else if fullSince == nil {
            fullSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    private func send(_ packet: MQTTPacket, context: ChannelHandlerContext) {
        write(packet, on: context)
        context.flush()
    }

    /// Encodes `packet` and writes it (not flushed).
    private func write(_ packet: MQTTPacket, on context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: packet.encodedSize(version: .v5))
        packet.encode(into: &buffer, version: .v5)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }
}
