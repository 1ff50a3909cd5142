public import MQTTCodec
import NIOCore

/// Byte forms of what stores keep as blobs: properties as on the wire (length prefix included),
/// so every adapter stores the same bytes and the codec's own validation reads them back.
public enum StoreCoding {
    public static func encode(_ properties: MQTTProperties) -> [UInt8] {
        var buffer = ByteBuffer()
        properties.write(to: &buffer)
        return Array(buffer.readableBytesView)
    }

    public static func decodeProperties(_ bytes: [UInt8], context: MQTTProperty.Context) throws -> MQTTProperties {
        var buffer = ByteBuffer(bytes: bytes)
        if bytes.isEmpty { return [] }
        return try MQTTProperties.read(from: &buffer, context: context)
    }

    /// Subscription identifiers as text, "7,9".
    public static func encode(identifiers: [Int]) -> String? {
        identifiers.isEmpty ? nil : identifiers.map(String.init).joined(separator: ",")
    }

    public static func decodeIdentifiers(_ text: String?) -> [Int] {
        guard let text else { return [] }
        return text.split(separator: ",").compactMap { Int($0) }
    }
}
