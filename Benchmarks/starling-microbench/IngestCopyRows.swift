import NIOCore
import StarlingCore

/// The ingest bridge's rows in COPY's text format, for the ceiling the ingest figures are held
/// against (`PostgresCopyBenchmark.ingestCeiling`): the values the store's de-duplicating
/// statement stores (no packet id for QoS 0, an empty content type or user property list as
/// NULL), without the de-duplication.
enum IngestCopyRows {
    /// The columns COPY fills, in the order of `copyRows`.
    static let copyColumns = [
        "received_at", "client_id", "username", "packet_id", "topic", "payload", "payload_json", "qos", "retain", "content_type",
        "user_properties", "content_hash", "node_id"
    ]

    /// The rows of `records`.
    static func copyRows(_ records: [IngestRecord]) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(records.count * 320)
        for r in records {
            out.writeString(IngestText.sqliteTimestamp(r.receivedAt))
            out.writeString("+00\t")
            writeText(r.clientID, to: &out)
            out.writeString("\t")
            if let username = r.username { writeText(username, to: &out) } else { out.writeString("\\N") }
            out.writeString("\t")
            if let packetID = r.packetID, packetID != 0 { out.writeString(String(packetID)) } else { out.writeString("\\N") }
            out.writeString("\t")
            writeText(r.topic, to: &out)
            out.writeString("\t")
            r.payload.withUnsafeReadableBytes { writeBytea($0, to: &out) }
            out.writeString("\t")
            if let json = IngestText.json(r.payload) { writeText(json, to: &out) } else { out.writeString("\\N") }
            out.writeString("\t\(r.qos)\t\(r.retain ? "t" : "f")\t")
            if let type = r.contentType, !type.isEmpty { writeText(type, to: &out) } else { out.writeString("\\N") }
            out.writeString("\t")
            if let properties = IngestText.userProperties(r.userProperties), !properties.isEmpty {
                writeText(properties, to: &out)
            } else {
                out.writeString("\\N")
            }
            out.writeString("\t")
            r.contentHash.withUnsafeBytes { writeBytea($0, to: &out) }
            out.writeString("\t")
            writeText(r.nodeID, to: &out)
            out.writeString("\n")
        }
        return out
    }

    /// A text value, with COPY's escapes for backslash, tab, newline and carriage return.
    static func writeText(_ text: String, to out: inout ByteBuffer) {
        let utf8 = text.utf8
        if !utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
            out.writeString(text)
            return
        }
        for byte in utf8 {
            switch byte {
            case 0x5C: out.writeStaticString("\\\\")
            case 0x09: out.writeStaticString("\\t")
            case 0x0A: out.writeStaticString("\\n")
            case 0x0D: out.writeStaticString("\\r")
            default: out.writeInteger(byte)
            }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A bytea value in hex form (`\x…`), its backslash escaped for COPY.
    static func writeBytea(_ bytes: UnsafeRawBufferPointer, to out: inout ByteBuffer) {
        out.writeStaticString("\\\\x")
        out.reserveCapacity(minimumWritableBytes: bytes.count * 2)
        for byte in bytes {
            out.writeInteger(hexDigits[Int(byte >> 4)])
            out.writeInteger(hexDigits[Int(byte & 0x0F)])
        }
    }
}
