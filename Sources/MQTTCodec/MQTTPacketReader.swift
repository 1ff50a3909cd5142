public import NIOCore

/// The bytes a connection has read, cut into packets: what a channel handler keeps between its
/// reads (the client listener's, the node links' and the benchmark's clients alike). `next()`
/// decodes whole packets; `nextFrame()` only cuts frames, for a reader that parses the hot
/// packets itself (`starling-bench`).
///
/// Reads may nest: handling one packet can make NIO deliver the connection's next bytes before
/// the handler returns (a write that fails while answering, for example, makes NIO read what
/// is left before it reports the close). Bytes that arrive so are appended behind the ones not
/// yet decoded, and the decoding further up the stack gets to them in order; a nested read
/// that decoded its bytes at once would start in the middle of the packet the outer read had
/// begun (node links saw "PUBREL has fixed header flags 0x7" after a frozen node resumed).
///
/// ```swift
/// guard reader.receive(&bytes) else { return }   // a read further up decodes them
/// defer { reader.finish(allocator: context.channel.allocator) }
/// while let packet = try reader.next() { handle(packet) }
/// ```
public struct MQTTPacketReader: Sendable {
    public var decoder: MQTTPacketDecoder
    private var pending: ByteBuffer?
    private var decoding = false

    public init(decoder: MQTTPacketDecoder) {
        self.decoder = decoder
    }

    /// Appends `bytes` to what is not decoded yet. True when the caller decodes now (then it
    /// must call `finish` when done); false when a decode further up the stack is running and
    /// will get to these bytes.
    public mutating func receive(_ bytes: inout ByteBuffer) -> Bool {
        if pending == nil {
            pending = bytes
            bytes.moveReaderIndex(to: bytes.writerIndex)
        } else {
            pending!.writeBuffer(&bytes)
        }
        guard !decoding else { return false }
        decoding = true
        return true
    }

    /// The next whole packet, or nil when the bytes end in an incomplete one (or are used up).
    public mutating func next() throws(MQTTCodecError) -> MQTTPacket? {
        guard var buffer = pending.take() else { return nil }
        // What remains goes back before the packet is handled, so bytes of a nested read are
        // appended behind it.
        defer { pending = buffer.readableBytes > 0 ? buffer : nil }
        return try decoder.next(from: &buffer)
    }

    /// The next whole frame (fixed header checked, body not decoded), or nil as `next()`.
    public mutating func nextFrame() throws(MQTTCodecError) -> MQTTFrame? {
        guard var buffer = pending.take() else { return nil }
        defer { pending = buffer.readableBytes > 0 ? buffer : nil }
        return try MQTTFrame.read(from: &buffer, maximumPacketSize: decoder.maximumPacketSize)
    }

    /// Ends a decode: an incomplete packet left over is kept alone, compacted, rather than the
    /// whole read buffer it arrived in.
    public mutating func finish(allocator: ByteBufferAllocator) {
        decoding = false
        guard var rest = pending, rest.readerIndex > 0 else { return }
        var compact = allocator.buffer(capacity: rest.readableBytes)
        compact.writeBuffer(&rest)
        pending = compact
    }

    /// Forgets the bytes not decoded yet (a connection that is closing reads no more packets).
    public mutating func discardPending() {
        pending = nil
    }

    /// Bytes received and not decoded yet.
    public var pendingBytes: Int { pending?.readableBytes ?? 0 }
}
