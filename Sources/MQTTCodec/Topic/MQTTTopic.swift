/// Topic Names and Topic Filters [MQTT-4.7].
public enum MQTTTopic {
    /// Validates a Topic Name as carried by PUBLISH or a Will: at least one character
    /// [MQTT-4.7.3-1], no wildcard characters [MQTT-3.3.2-2][MQTT-4.7.0-1]. (UTF-8 rules are
    /// checked when the string is read.) A violation parses, so it is a Protocol Error.
    public static func validateName(_ name: String, spec: String = "MQTT-3.3.2-2") throws(MQTTCodecError) {
        guard !name.isEmpty else {
            throw .protocolError("topic name is empty", spec: "MQTT-4.7.3-1")
        }
        for byte in name.utf8 where byte == UInt8(ascii: "+") || byte == UInt8(ascii: "#") {
            throw .protocolError("topic name \"\(name)\" contains a wildcard character", spec: spec)
        }
    }

    /// Validates the wildcard rules of a Topic Filter (without any `$share/` prefix): at least
    /// one character [MQTT-4.7.3-1]; `#` alone or after `/`, and last [MQTT-4.7.1-1]; `+` a
    /// whole level [MQTT-4.7.1-2]. A violation is a Protocol Error.
    public static func validateFilter(_ filter: String) throws(MQTTCodecError) {
        let bytes = Array(filter.utf8)
        guard !bytes.isEmpty else {
            throw .protocolError("topic filter is empty", spec: "MQTT-4.7.3-1")
        }
        let slash = UInt8(ascii: "/")
        for (index, byte) in bytes.enumerated() {
            let startsLevel = index == 0 || bytes[index - 1] == slash
            let endsLevel = index == bytes.count - 1 || bytes[index + 1] == slash
            switch byte {
            case UInt8(ascii: "#"):
                guard startsLevel, index == bytes.count - 1 else {
                    throw .protocolError(
                        "in topic filter \"\(filter)\", '#' must be the last character and stand alone in its level", spec: "MQTT-4.7.1-1")
                }
            case UInt8(ascii: "+"):
                guard startsLevel, endsLevel else {
                    throw .protocolError("in topic filter \"\(filter)\", '+' must occupy an entire level", spec: "MQTT-4.7.1-2")
                }
            default:
                continue
            }
        }
    }

    /// True when `filter` (without `$share/`) matches `topic`. Topic Names starting with `$`
    /// are not matched by filters starting with a wildcard [MQTT-4.7.2-1].
    public static func matches(filter: String, topic: String) -> Bool {
        var f = filter.utf8[...]
        var t = topic.utf8[...]
        if t.first == UInt8(ascii: "$"), let first = f.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "#") {
            return false
        }
        let slash = UInt8(ascii: "/")
        while true {
            let fEnd = f.firstIndex(of: slash) ?? f.endIndex
            let fLevel = f[f.startIndex..<fEnd]
            if fLevel.elementsEqual("#".utf8) { return true }  // matches the parent and all below [MQTT-4.7.1.2]
            let tEnd = t.firstIndex(of: slash)
            let tLevel = t[t.startIndex..<(tEnd ?? t.endIndex)]
            if !(fLevel.elementsEqual("+".utf8) || fLevel.elementsEqual(tLevel)) { return false }
            let fMore = fEnd != f.endIndex
            let tMore = tEnd != nil
            if !fMore && !tMore { return true }
            if !tMore {
                // "sport/#" also matches "sport": the remaining filter must be exactly "/#".
                return f[f.index(after: fEnd)...].elementsEqual("#".utf8)
            }
            if !fMore { return false }
            f = f[f.index(after: fEnd)...]
            t = t[t.index(after: tEnd!)...]
        }
    }

    /// The levels of a topic name or filter, split at `/`; empty levels are kept.
    public static func levels(_ topic: String) -> [Substring] {
        // Split the UTF-8 view: '/' is one byte, and byte-wise splitting avoids the per-Character
        // grapheme work of String.split (measured: most of an index miss).
        var levels: [Substring] = []
        levels.reserveCapacity(8)
        let utf8 = topic.utf8
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: "/") {
                levels.append(topic[start..<index])
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        levels.append(topic[start..<utf8.endIndex])
        return levels
    }
}

/// A Topic Filter as subscribed: either plain, or a Shared Subscription
/// `$share/{ShareName}/{filter}` [MQTT-4.8.2].
public struct MQTTTopicFilter: Sendable, Hashable, CustomStringConvertible {
    /// The filter that topics are matched against (without the `$share/{ShareName}/` prefix).
    public var filter: String
    /// The share name of a Shared Subscription.
    public var shareName: String?
    /// The filter exactly as the client sent it.
    public var raw: String

    public var isShared: Bool { shareName != nil }

    /// True when the filter holds `+` or `#`.
    public var hasWildcards: Bool { filter.utf8.contains { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") } }

    /// Parses and validates a filter as it appears in SUBSCRIBE or UNSUBSCRIBE.
    public init(_ raw: String) throws(MQTTCodecError) {
        self.raw = raw
        let prefix = "$share/"
        if raw.hasPrefix(prefix) {
            let rest = raw.dropFirst(prefix.count)
            guard let slash = rest.firstIndex(of: "/") else {
                throw .protocolError("shared subscription \"\(raw)\" has no topic filter after the share name", spec: "MQTT-4.8.2-2")
            }
            let share = rest[rest.startIndex..<slash]
            guard !share.isEmpty else {
                throw .protocolError("shared subscription \"\(raw)\" has an empty share name", spec: "MQTT-4.8.2-1")
            }
            guard !share.contains("+"), !share.contains("#") else {
                throw .protocolError("share name \"\(share)\" contains a wildcard character", spec: "MQTT-4.8.2-2")
            }
            let filter = String(rest[rest.index(after: slash)...])
            guard !filter.isEmpty else {
                throw .protocolError("shared subscription \"\(raw)\" has an empty topic filter", spec: "MQTT-4.8.2-2")
            }
            try MQTTTopic.validateFilter(filter)
            self.shareName = String(share)
            self.filter = filter
        } else {
            try MQTTTopic.validateFilter(raw)
            self.shareName = nil
            self.filter = raw
        }
    }

    public func matches(_ topic: String) -> Bool {
        MQTTTopic.matches(filter: filter, topic: topic)
    }

    public var description: String { raw }
}
