public import NIOCore

/// The data representations of MQTT [MQTT-1.5]: big-endian integers, Variable Byte Integers,
/// length-prefixed UTF-8 strings, binary data and string pairs. Every reader throws a
/// `MQTTCodecError` with reason 0x81 when the bytes run out, so nothing reads past a packet.
extension ByteBuffer {
    /// The largest value a four-byte Variable Byte Integer holds [MQTT-1.5.5].
    public static let maxVariableByteInteger = 268_435_455

    @inlinable
    public mutating func readMQTTByte(_ what: @autoclosure () -> String = "byte") throws(MQTTCodecError) -> UInt8 {
        guard let value = readInteger(as: UInt8.self) else {
            throw .malformed("packet ends inside \(what())")
        }
        return value
    }

    @inlinable
    public mutating func readMQTTUInt16(_ what: @autoclosure () -> String = "two-byte integer") throws(MQTTCodecError) -> UInt16 {
        guard let value = readInteger(endianness: .big, as: UInt16.self) else {
            throw .malformed("packet ends inside \(what())")
        }
        return value
    }

    @inlinable
    public mutating func readMQTTUInt32(_ what: @autoclosure () -> String = "four-byte integer") throws(MQTTCodecError) -> UInt32 {
        guard let value = readInteger(endianness: .big, as: UInt32.self) else {
            throw .malformed("packet ends inside \(what())")
        }
        return value
    }

    /// Reads a Variable Byte Integer of at most four bytes [MQTT-1.5.5-1].
    @inlinable
    public mutating func readMQTTVariableByteInteger(_ what: @autoclosure () -> String = "variable byte integer") throws(MQTTCodecError)
        -> Int
    {
        var value = 0
        var shift = 0
        for index in 0..<4 {
            guard let byte = readInteger(as: UInt8.self) else {
                throw .malformed("packet ends inside \(what())")
            }
            value |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                // The encoding must use the minimum number of bytes [MQTT-1.5.5-1].
                if index > 0 && byte == 0 {
                    throw .malformed("\(what()) is not minimally encoded", spec: "MQTT-1.5.5-1")
                }
                return value
            }
            shift += 7
        }
        throw .malformed("\(what()) is longer than four bytes", spec: "MQTT-1.5.5-1")
    }

    /// Reads a UTF-8 Encoded String, refusing ill-formed UTF-8, surrogates [MQTT-1.5.4-1] and
    /// U+0000 [MQTT-1.5.4-2]. Those are Malformed Packets.
    @inlinable
    public mutating func readMQTTString(_ what: @autoclosure () -> String = "string") throws(MQTTCodecError) -> String {
        let length = Int(try readMQTTUInt16(what()))
        guard let view = readSlice(length: length) else {
            throw .malformed("\(what()) of \(length) bytes overruns the packet")
        }
        return try view.validatedMQTTString(what())
    }

    /// Reads Binary Data: a two-byte length and that many bytes, as a zero-copy slice.
    @inlinable
    public mutating func readMQTTBinary(_ what: @autoclosure () -> String = "binary data") throws(MQTTCodecError) -> ByteBuffer {
        let length = Int(try readMQTTUInt16(what()))
        guard let slice = readSlice(length: length) else {
            throw .malformed("\(what()) of \(length) bytes overruns the packet")
        }
        return slice
    }

    /// Decodes the readable bytes as an MQTT UTF-8 string.
    @inlinable
    public func validatedMQTTString(_ what: @autoclosure () -> String = "string") throws(MQTTCodecError) -> String {
        let result: String? = withUnsafeReadableBytes { raw in
            if raw.contains(0) { return nil }
            return String(validating: raw, as: UTF8.self)
        }
        guard let result else {
            let hasNull = withUnsafeReadableBytes { $0.contains(0) }
            if hasNull {
                throw .malformed("\(what()) contains U+0000", spec: "MQTT-1.5.4-2")
            }
            throw .malformed("\(what()) is not well-formed UTF-8", spec: "MQTT-1.5.4-1")
        }
        return result
    }

    /// True when the readable bytes are well-formed UTF-8 (Payload Format Indicator 1).
    @inlinable
    public var isValidMQTTUTF8: Bool {
        withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) != nil && !$0.contains(0) }
    }

    @inlinable
    @discardableResult
    public mutating func writeMQTTVariableByteInteger(_ value: Int) -> Int {
        precondition(value >= 0 && value <= Self.maxVariableByteInteger, "variable byte integer out of range")
        var remaining = value
        var written = 0
        repeat {
            var byte = UInt8(remaining & 0x7F)
            remaining >>= 7
            if remaining > 0 { byte |= 0x80 }
            writeInteger(byte)
            written += 1
        } while remaining > 0
        return written
    }

    @inlinable
    public mutating func writeMQTTString(_ string: String) {
        let utf8 = string.utf8
        writeInteger(UInt16(truncatingIfNeeded: utf8.count), endianness: .big)
        writeBytes(utf8)
    }

    @inlinable
    public mutating func writeMQTTBinary(_ bytes: ByteBuffer) {
        writeInteger(UInt16(truncatingIfNeeded: bytes.readableBytes), endianness: .big)
        writeImmutableBuffer(bytes)
    }
}

/// Encoded sizes of the data representations, for computing Remaining Length before writing.
public enum MQTTSize {
    @inlinable
    public static func variableByteInteger(_ value: Int) -> Int {
        switch value {
        case ..<128: 1
        case ..<16_384: 2
        case ..<2_097_152: 3
        default: 4
        }
    }

    @inlinable
    public static func string(_ string: String) -> Int { 2 + string.utf8.count }

    @inlinable
    public static func binary(_ bytes: ByteBuffer) -> Int { 2 + bytes.readableBytes }
}
