import Foundation
public import NIOCore
#if canImport(Glibc)
    import Glibc
#endif

/// Text forms of ingested fields, the same for every store.
public enum IngestText {
    /// `YYYY-MM-DD HH:MM:SS.SSS` in UTC.
    public static func sqliteTimestamp(_ milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let ms = Int(milliseconds % 1000)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return
            "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)"
    }

    /// The payload as JSON text when it is valid JSON (objects, arrays and scalars), else nil.
    /// Payloads holding `\u0000` are left out: PostgreSQL's jsonb cannot store that character.
    public static func json(_ payload: ByteBuffer) -> String? {
        guard payload.readableBytes > 0, payload.readableBytes <= 1 << 20 else { return nil }
        let data = Data(payload.readableBytesView)
        guard let first = data.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }),
            [
                UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "\""), UInt8(ascii: "-"), UInt8(ascii: "t"), UInt8(ascii: "f"),
                UInt8(ascii: "n")
            ].contains(first)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        else { return nil }
        guard data.firstRange(of: escapedNUL) == nil, (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
        else {
            return nil
        }
        // JSONSerialization accepted it, so it is valid UTF-8.
        return String(decoding: data, as: UTF8.self)
    }

    /// `\u0000` as bytes: searched for in the bytes (String.contains went through Foundation's
    /// locale-aware search, which cost as much as parsing the JSON).
    private static let escapedNUL: [UInt8] = Array(#"\u0000"#.utf8)

    /// User properties as a JSON array of [name, value] pairs (order and repeats kept), or nil.
    public static func userProperties(_ properties: [(String, String)]) -> String? {
        guard !properties.isEmpty,
            let data = try? JSONSerialization.data(withJSONObject: properties.map { [$0.0, $0.1] })
        else { return nil }
        return String(data: data, encoding: .utf8)
    }
}
