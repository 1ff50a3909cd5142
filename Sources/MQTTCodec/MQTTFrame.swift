public import NIOCore

/// A framed control packet: its first byte and its body, a zero-copy slice of the input.
public struct MQTTFrame: Sendable, Hashable {
    /// Packet type (high nibble) and flags (low nibble).
    public var typeAndFlags: UInt8
    /// The Remaining Length bytes: variable header and payload.
    public var body: ByteBuffer

    public init(typeAndFlags: UInt8, body: ByteBuffer) {
        (self.typeAndFlags, self.body) = (typeAndFlags, body)
    }

    /// The size of the whole packet on the wire.
    public var size: Int { 1 + MQTTSize.variableByteInteger(body.readableBytes) + body.readableBytes }

    /// Reads one frame from the front of `buffer` if it is complete.
    ///
    /// The declared Remaining Length is checked against `maximumPacketSize` as soon as the
    /// fixed header is readable, **before** any of the body is waited for, so a peer cannot
    /// make the receiver buffer more than the maximum. A length of more than four bytes is
    /// malformed [MQTT-1.5.5-1]; nothing past the fourth length byte is read.
    ///
    /// - Returns: nil when more bytes are needed; the buffer is then left untouched.
    public static func read(from buffer: inout ByteBuffer, maximumPacketSize: Int) throws(MQTTCodecError) -> MQTTFrame? {
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        var length = 0
        var shift = 0
        var headerSize = 1
        while true {
            guard headerSize <= 4 else {
                throw .malformed("remaining length is longer than four bytes", spec: "MQTT-1.5.5-1")
            }
            guard let byte = buffer.getInteger(at: start + headerSize, as: UInt8.self) else { return nil }
            headerSize += 1
            length |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                // The encoding must use the minimum number of bytes [MQTT-1.5.5-1].
                if headerSize > 2 && byte == 0 {
                    throw .malformed("remaining length is not minimally encoded", spec: "MQTT-1.5.5-1")
                }
                break
            }
            shift += 7
        }
        let total = headerSize + length
        if total > maximumPacketSize {
            // [MQTT-3.1.2-24] / [MQTT-4.13]: 0x95 Packet too large.
            throw .packetTooLarge(size: total, maximum: maximumPacketSize)
        }
        guard buffer.readableBytes >= total else { return nil }
        buffer.moveReaderIndex(forwardBy: headerSize)
        let body = buffer.readSlice(length: length)!
        return MQTTFrame(typeAndFlags: first, body: body)
    }
}
