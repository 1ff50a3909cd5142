import MQTTCodec
import NIOCore

/// One MQTT client connection: cuts the input into frames (`MQTTPacketReader`), parses the hot
/// packets (PUBLISH and the acknowledgements) in place, decodes the rest with the codec, and
/// batches its output: everything written while handling one read, or one burst of
/// publishes, leaves in one buffer with one flush.
final class Client: FrameReading {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maximumPacketSize = 16 << 20
    /// Upper bound on the bytes of publishes written in one batch.
    static let batchBytes = 64 * 1024

    let spec: ClientSpec
    /// Index in the worker's client list.
    var slot = -1
    private let worker: Worker
    private let config: RunConfig
    private var context: ChannelHandlerContext?
    var reader = MQTTPacketReader(decoder: MQTTPacketDecoder(role: .client, maximumPacketSize: Client.maximumPacketSize))
    private var out: ByteBuffer
    private var connected = false
    /// This program closes the connection on purpose (refused CONNACK, end of run).
    private var closing = false
    /// Closed after an I/O or protocol error, or a server DISCONNECT.
    private var aborted = false
    private var sentSinceTick = false
    private var idleSince: UInt64 = 0

    // Publisher state.
    private let template: ByteBuffer
    private let packetIDOffset: Int
    private let payloadOffset: Int
    private let payloadSize: Int
    private let qos: UInt8
    private let batchLimit: Int
    private var publishing = false
    private var done = false
    private var paceStart: UInt64 = 0
    private var sentCount = 0
    private var sequence: UInt32 = 0
    private(set) var inflight = 0
    private var window: Int
    /// Packet identifiers awaiting PUBACK / PUBCOMP, one bit each.
    private var inUse: [UInt64]
    private var lastPacketID: UInt16 = 0
    private var pumpScheduled = false

    // Subscriber state.
    private var pendingSubAcks = 0
    /// Sequence numbers seen, per publisher index.
    private var seen: [SequenceSet] = []

    init(worker: Worker, spec: ClientSpec) {
        (self.worker, self.spec) = (worker, spec)
        self.config = worker.config
        self.out = worker.emptyBuffer
        self.window = config.inflight
        self.qos = config.qos.rawValue
        self.payloadSize = config.payloadSize
        if spec.role == .publisher {
            var payload = ByteBufferAllocator().buffer(capacity: config.payloadSize)
            if config.jsonPayload {
                payload = JSONPayload.template(size: config.payloadSize)
            } else {
                payload.writeRepeatingByte(UInt8(ascii: "x"), count: config.payloadSize)
            }
            let publish = MQTTPublish(
                topic: spec.topic, payload: payload, qos: config.qos,
                packetID: config.qos == .atMostOnce ? nil : 0)
            template = MQTTPacket.publish(publish).encoded(version: config.version)
            // Fixed header, topic, then the packet identifier (QoS 1/2).
            packetIDOffset =
                1 + MQTTSize.variableByteInteger(publish.bodySize(version: config.version))
                + MQTTSize.string(spec.topic)
            payloadOffset = template.readableBytes - config.payloadSize
            batchLimit = max(1, Client.batchBytes / template.readableBytes)
            inUse = config.qos == .atMostOnce ? [] : [UInt64](repeating: 0, count: 1024)
        } else {
            template = worker.emptyBuffer
            packetIDOffset = 0
            payloadOffset = 0
            batchLimit = 0
            inUse = []
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        worker.register(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        worker.unregister(self)
    }

    func channelActive(context: ChannelHandlerContext) {
        let connect = MQTTConnect(
            version: config.version, clientID: spec.clientID, cleanStart: true, keepAlive: config.keepAlive,
            username: config.username, password: config.password.map { ByteBuffer(string: $0) })
        MQTTPacket.connect(connect).encode(into: &out, version: config.version)
        flushOut()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closing {
            if connected { worker.counters.dropped += 1 } else { worker.counters.connectFailed += 1 }
        }
        if spec.role == .publisher && connected {
            // A lost publisher sends no more: it counts as done so a --count-limit run can end.
            inflight = 0
            markDone()
        }
        connected = false
        publishing = false
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        abort()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { readFrames(context: context, data: data) }

    func handleFrame(_ frame: MQTTFrame, context: ChannelHandlerContext) throws -> Bool {
        try handle(frame)
        return !(closing || aborted)
    }

    func readFailed(context: ChannelHandlerContext) { abort() }

    func channelReadComplete(context: ChannelHandlerContext) {
        if publishing, fill(now: monotonicNanos()) { schedulePump() }
        flushOut()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && publishing { schedulePump() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Input

    private func handle(_ frame: MQTTFrame) throws {
        let body = frame.body
        switch frame.typeAndFlags >> 4 {
        case 3:
            try receivePublish(frame)
        case 4:  // PUBACK
            let (id, reason) = try ackFields(body)
            completed(id, ok: reason < 0x80)
        case 5:  // PUBREC
            let (id, reason) = try ackFields(body)
            if reason < 0x80 {
                appendAck(0x62, id)  // PUBREL
            } else {
                completed(id, ok: false)
            }
        case 6:  // PUBREL: the subscriber's side of QoS 2
            let (id, _) = try ackFields(body)
            appendAck(0x70, id)  // PUBCOMP
        case 7:  // PUBCOMP
            let (id, reason) = try ackFields(body)
            completed(id, ok: reason < 0x80)
        case 13:  // PINGRESP
            break
        default:
            let packet = try MQTTPacket.decode(frame, version: config.version, role: .client)
            try handle(packet)
        }
    }

    private func ackFields(_ body: ByteBuffer) throws(MQTTCodecError) -> (UInt16, UInt8) {
        guard let id = body.getInteger(at: body.readerIndex, as: UInt16.self) else {
            throw .malformed("acknowledgement without a packet identifier")
        }
        let reason = body.readableBytes > 2 ? body.getInteger(at: body.readerIndex + 2, as: UInt8.self) ?? 0 : 0
        return (id, reason)
    }

    private func handle(_ packet: MQTTPacket) throws {
        switch packet {
        case .connack(let ack):
            guard ack.reasonCode.isSuccess else {
                worker.counters.connectFailed += 1
                close()
                return
            }
            connected = true
            worker.counters.connected += 1
            if let receiveMaximum = ack.properties.receiveMaximum {
                window = min(window, Int(receiveMaximum))
            }
            switch spec.role {
            case .publisher: worker.publisherConnected(self)
            case .subscriber: subscribe()
            case .idle: break
            }
        case .suback(let ack):
            for code in ack.reasonCodes where !code.isSuccess { worker.counters.subscribeRefused += 1 }
            pendingSubAcks -= 1
            if pendingSubAcks == 0 { worker.counters.subscribed += 1 }
        case .disconnect:
            abort()  // the server ended the connection: counts as dropped
        default:
            break  // UNSUBACK, AUTH: not expected, harmless
        }
    }

    /// The subscriber's hot path: finds the payload without decoding the topic, records the
    /// latency and the sequence number, and queues the acknowledgement.
    private func receivePublish(_ frame: MQTTFrame) throws(MQTTCodecError) {
        let body = frame.body
        var index = body.readerIndex
        let end = body.writerIndex
        guard let topicLength = body.getInteger(at: index, as: UInt16.self) else {
            throw .malformed("PUBLISH without a topic")
        }
        index += 2 + Int(topicLength)
        let qos = (frame.typeAndFlags >> 1) & 0x03
        var id: UInt16 = 0
        if qos > 0 {
            guard let value = body.getInteger(at: index, as: UInt16.self) else {
                throw .malformed("PUBLISH without a packet identifier")
            }
            id = value
            index += 2
        }
        if config.version.hasProperties {
            var length = 0
            var shift = 0
            while true {
                guard shift <= 21, let byte = body.getInteger(at: index, as: UInt8.self) else {
                    throw .malformed("PUBLISH properties")
                }
                index += 1
                length |= Int(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            index += length
        }
        guard index <= end else { throw .malformed("PUBLISH is shorter than its header") }
        if qos == 1 {
            appendAck(0x40, id)  // PUBACK
        } else if qos == 2 {
            appendAck(0x50, id)  // PUBREC
        }
        guard spec.measured else { return }

        let now = monotonicNanos()
        worker.counters.received += 1
        worker.counters.lastReceive = now
        let payloadLength = end - index
        guard payloadLength >= PayloadHeader.timestampSize,
            let sent = body.getInteger(at: index, as: UInt64.self), sent <= now
        else { return }
        let latency = now - sent
        if latency < Worker.maxLatencyNanos { worker.latency.record(latency) }
        guard payloadLength >= PayloadHeader.size,
            let publisher = body.getInteger(at: index + 8, as: UInt32.self),
            let seq = body.getInteger(at: index + 12, as: UInt32.self),
            publisher < PayloadHeader.maxPublisherIndex
        else { return }
        let p = Int(publisher)
        if p >= seen.count { seen.append(contentsOf: repeatElement(SequenceSet(), count: p + 1 - seen.count)) }
        if !seen[p].insert(seq) { worker.counters.duplicates += 1 }
    }

    // MARK: Output

    private func appendAck(_ firstByte: UInt8, _ id: UInt16) {
        out.writeInteger(UInt16(firstByte) << 8 | 2)
        out.writeInteger(id)
    }

    /// Writes and flushes whatever is queued, in one buffer.
    private func flushOut() {
        guard out.readableBytes > 0, let context else { return }
        context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
        out = worker.emptyBuffer
        sentSinceTick = true
    }

    private func subscribe() {
        var id: UInt16 = 0
        var start = 0
        while start < spec.filters.count {
            let end = min(start + filtersPerSubscribe, spec.filters.count)
            var subscriptions: [MQTTSubscription] = []
            for raw in spec.filters[start..<end] {
                // Filters were validated when the run was set up.
                guard let filter = try? MQTTTopicFilter(raw) else { continue }
                subscriptions.append(MQTTSubscription(filter: filter, qos: config.subscribeQoS))
            }
            id &+= 1
            MQTTPacket.subscribe(MQTTSubscribe(packetID: id, subscriptions: subscriptions))
                .encode(into: &out, version: config.version)
            pendingSubAcks += 1
            start = end
        }
        if pendingSubAcks == 0 { worker.counters.subscribed += 1 }
        flushOut()
    }

    func housekeeping(now: UInt64) {
        guard connected, config.keepAlive > 0 else { return }
        if sentSinceTick {
            sentSinceTick = false
            idleSince = now
        } else if now &- idleSince >= UInt64(config.keepAlive) * 750_000_000 {
            out.writeInteger(UInt16(0xC000))  // PINGREQ
            flushOut()
        }
    }

    /// Sends DISCONNECT and closes.
    func disconnect() -> EventLoopFuture<Void> {
        guard let context else { return worker.loop.makeSucceededVoidFuture() }
        closing = true
        publishing = false
        if connected {
            out.writeInteger(UInt16(0xE000))  // DISCONNECT, success, no properties
            flushOut()
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.close(promise: promise)
        return promise.futureResult.flatMapErrorThrowing { _ in }
    }

    /// Closes on purpose (a refused CONNACK, already counted).
    private func close() {
        closing = true
        publishing = false
        context?.close(promise: nil)
    }

    /// Closes after an error or a server DISCONNECT; `channelInactive` counts it as dropped
    /// (or as failed before CONNACK).
    private func abort() {
        aborted = true
        publishing = false
        context?.close(promise: nil)
    }

    // MARK: Publishing

    func startPublishing(at start: UInt64) {
        guard connected, !done else { return }
        paceStart = start
        publishing = true
        if config.rate == 0 { schedulePump() }
    }

    func stopPublishing() {
        publishing = false
    }

    /// Called by the worker's pacer for rate-limited publishers.
    func pace(now: UInt64) {
        guard publishing else { return }
        if fill(now: now) { schedulePump() }
        flushOut()
    }

    private func schedulePump() {
        guard !pumpScheduled, let context else { return }
        pumpScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            pumpScheduled = false
            guard publishing else { return }
            let more = fill(now: monotonicNanos())
            flushOut()
            if more { schedulePump() }
        }
    }

    /// Queues as many publishes as the rate, the window, the limit and writability allow, up
    /// to one batch. True when the batch was full, so that more may be sent at once.
    private func fill(now: UInt64) -> Bool {
        guard publishing, let context, context.channel.isWritable else { return false }
        var allowance = batchLimit
        if spec.messageLimit > 0 { allowance = min(allowance, spec.messageLimit - sentCount) }
        if config.rate > 0 {
            guard now >= paceStart else { return false }
            let due = Int(Double(now - paceStart) * config.rate / 1e9) + 1 - sentCount
            allowance = min(allowance, due)
        }
        if qos > 0 { allowance = min(allowance, window - inflight) }
        guard allowance > 0 else { return false }
        writePublishes(allowance, now: now)
        if spec.messageLimit > 0 && sentCount >= spec.messageLimit { markDone() }
        return allowance == batchLimit && publishing
    }

    private func writePublishes(_ count: Int, now: UInt64) {
        let size = template.readableBytes
        out.reserveCapacity(minimumWritableBytes: count * size)
        let json = config.jsonPayload
        let timestamp = !json && payloadSize >= PayloadHeader.timestampSize
        let header = !json && payloadSize >= PayloadHeader.size
        let publisher = UInt32(truncatingIfNeeded: spec.index)
        for _ in 0..<count {
            let base = out.writerIndex
            out.writeImmutableBuffer(template)
            if qos > 0 { out.setInteger(nextPacketID(), at: base + packetIDOffset) }
            if timestamp { out.setInteger(now, at: base + payloadOffset) }
            if header {
                out.setInteger(publisher, at: base + payloadOffset + 8)
                out.setInteger(sequence, at: base + payloadOffset + 12)
            }
            if json {
                JSONPayload.setCounter(UInt64(publisher) << 32 | UInt64(sequence), in: &out, at: base + payloadOffset)
            }
            sequence &+= 1
        }
        sentCount += count
        if qos > 0 { inflight += count }
        worker.counters.sent += count
    }

    private func markDone() {
        guard spec.role == .publisher, !done else { return }
        done = true
        publishing = false
        worker.counters.publishersDone += 1
    }

    /// The next free packet identifier; there is one, since `inflight < window <= 65535`.
    private func nextPacketID() -> UInt16 {
        while true {
            lastPacketID = lastPacketID == UInt16.max ? 1 : lastPacketID + 1
            let word = Int(lastPacketID >> 6)
            let bit: UInt64 = 1 << UInt64(lastPacketID & 63)
            if inUse[word] & bit == 0 {
                inUse[word] |= bit
                return lastPacketID
            }
        }
    }

    /// A QoS 1 or 2 exchange ended (PUBACK, PUBCOMP, or a refusing PUBREC).
    private func completed(_ id: UInt16, ok: Bool) {
        let word = Int(id >> 6)
        let bit: UInt64 = 1 << UInt64(id & 63)
        guard word < inUse.count, inUse[word] & bit != 0 else {
            worker.counters.rejected += 1  // an acknowledgement for nothing in flight
            return
        }
        inUse[word] &= ~bit
        inflight -= 1
        if ok { worker.counters.acked += 1 } else { worker.counters.rejected += 1 }
    }
}
