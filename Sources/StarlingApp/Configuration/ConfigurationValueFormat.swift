import MQTTCodec
import StarlingCore
import StarlingTransport

/// How a configuration value of type `T` is read from TOML (or an environment variable) and
/// written as a default in `generate-config`. A key is a path into `StarlingConfiguration` plus
/// one of these formats, so its default is the one written in the type that uses it.
struct ValueFormat<T>: Sendable {
    let kind: ConfigurationKey.Kind
    /// What is allowed, for the error that names a bad value.
    let allowed: String
    let parse: @Sendable (TOMLValue) -> T?
    let literal: @Sendable (T) -> String
    /// Appended to the key's documentation (the choices of an enumeration).
    var docSuffix = ""
}

extension ValueFormat where T: FixedWidthInteger & Sendable {
    static func integer(_ range: ClosedRange<Int64>) -> Self {
        Self(
            kind: .integer, allowed: "a whole number from \(range.lowerBound) to \(range.upperBound)",
            parse: { raw in
                guard case .integer(let v) = raw, range.contains(v) else { return nil }
                return T(exactly: v)
            },
            literal: { "\($0)" })
    }
}

extension ValueFormat where T == Double {
    static func seconds(_ range: ClosedRange<Double>) -> Self {
        Self(
            kind: .float, allowed: "a number of seconds from \(range.lowerBound) to \(range.upperBound)",
            parse: { raw in
                let number: Double? =
                    switch raw {
                    case .integer(let v): Double(v)
                    case .float(let v): v
                    default: nil
                    }
                return number.flatMap { range.contains($0) ? $0 : nil }
            },
            literal: { "\($0)" })
    }
}

extension ValueFormat where T == Bool {
    static let boolean = Self(
        kind: .boolean, allowed: "true or false",
        parse: { raw in if case .boolean(let b) = raw { b } else { nil } },
        literal: { "\($0)" })
}

extension ValueFormat where T: RawRepresentable & CaseIterable & Sendable, T.RawValue == String {
    /// One of the enumeration's raw values (compared without regard to case).
    static var choice: Self {
        let names = T.allCases.map { "\"\($0.rawValue)\"" }
        let list = names.count == 2 ? names.joined(separator: " or ") : "one of " + names.joined(separator: ", ")
        return Self(
            kind: .string, allowed: list,
            parse: { raw in
                guard case .string(let s) = raw else { return nil }
                return T.allCases.first { $0.rawValue.lowercased() == s.lowercased() }
            },
            literal: { "\"\($0.rawValue)\"" },
            docSuffix: " Allowed: \(list).")
    }
}

extension ValueFormat where T == String {
    /// Any string `valid` accepts.
    static func string(_ allowed: String, _ valid: @escaping @Sendable (String) -> Bool = { _ in true }) -> Self {
        Self(
            kind: .string, allowed: allowed,
            parse: { raw in if case .string(let s) = raw, valid(s) { s } else { nil } },
            literal: { "\"\($0)\"" })
    }
}

extension ValueFormat where T == String? {
    /// A string, "" standing for none (nil).
    static func optionalString(_ allowed: String, _ valid: @escaping @Sendable (String) -> Bool = { _ in true }) -> Self {
        Self(
            kind: .string, allowed: allowed,
            parse: { raw in
                guard case .string(let s) = raw, s.isEmpty || valid(s) else { return nil }
                return .some(s.isEmpty ? nil : s)
            },
            literal: { "\"\($0 ?? "")\"" })
    }
}

/// Each string of a TOML array through `element`; nil when the value is not an array of
/// strings or `element` refuses one of them.
private func stringArray<Element>(_ raw: TOMLValue, _ element: (String) -> Element?) -> [Element]? {
    guard case .array(let items) = raw else { return nil }
    var elements: [Element] = []
    for item in items {
        guard case .string(let s) = item, let value = element(s) else { return nil }
        elements.append(value)
    }
    return elements
}

extension ValueFormat where T == [ListenAddress] {
    static let listenAddresses = Self(
        kind: .stringList, allowed: "a list of \"HOST:PORT\" strings with ports 0-65535",
        parse: { stringArray($0) { ListenAddress($0) } },
        literal: { "[\($0.map { "\"\($0)\"" }.joined(separator: ", "))]" })
}

extension ValueFormat where T == TrustedProxies {
    static let trustedProxies = Self(
        kind: .stringList, allowed: "a list of IP addresses or CIDR ranges, e.g. [\"10.0.0.0/8\", \"127.0.0.1\"]",
        parse: { stringArray($0) { $0 }.flatMap { TrustedProxies($0) } },
        literal: { $0.description })
}

extension ValueFormat where T == ListenAddress? {
    /// "HOST:PORT", or "" for none.
    static func optionalListenAddress(_ none: String) -> Self {
        Self(
            kind: .string, allowed: "\"HOST:PORT\" with a port 0-65535, or \"\" for \(none)",
            parse: { raw in
                guard case .string(let s) = raw else { return nil }
                if s.isEmpty { return .some(nil) }
                return ListenAddress(s).map { .some($0) }
            },
            literal: { "\"\($0?.description ?? "")\"" })
    }
}

extension ValueFormat where T == [MQTTTopicFilter] {
    static let topicFilters = Self(
        kind: .stringList, allowed: "a list of valid MQTT topic filters (not $share/...)",
        parse: { stringArray($0) { s in (try? MQTTTopicFilter(s)).flatMap { $0.isShared ? nil : $0 } } },
        literal: { "[\($0.map { "\"\($0.raw)\"" }.joined(separator: ", "))]" })
}

extension ValueFormat where T == Int64? {
    /// A duration such as "30d", "12h", "90m", "45s"; "" = none.
    static let duration = Self(
        kind: .string, allowed: "\"\" or a whole number followed by s, m, h or d, e.g. \"30d\"",
        parse: { raw in
            guard case .string(let s) = raw else { return nil }
            if s.isEmpty { return .some(nil) }
            let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            guard let unit = s.last, let factor = units[unit], let count = Int64(s.dropLast()), count > 0 else { return nil }
            return count * factor
        },
        literal: { $0.map { "\"\($0)s\"" } ?? "\"\"" })
}

extension ValueFormat where T == MQTTQoS {
    static let qos = Self(
        kind: .integer, allowed: "0, 1 or 2",
        parse: { raw in
            guard case .integer(let v) = raw, (0...2).contains(v) else { return nil }
            return MQTTQoS(rawValue: UInt8(v))
        },
        literal: { "\($0.rawValue)" })
}

extension ConfigurationKey {
    /// A key whose value lives at `keyPath` of the configuration, read and written by `format`;
    /// its default is whatever `StarlingConfiguration()` holds there.
    init<T>(
        _ section: String, _ name: String, _ keyPath: WritableKeyPath<StarlingConfiguration, T>, _ format: ValueFormat<T>,
        _ doc: String
    ) {
        nonisolated(unsafe) let keyPath = keyPath  // key-path literals are immutable
        self.init(
            section: section, name: name, kind: format.kind, doc: doc + format.docSuffix,
            defaultLiteral: format.literal(StarlingConfiguration()[keyPath: keyPath])
        ) { config, raw in
            guard let value = format.parse(raw) else { return format.allowed }
            config[keyPath: keyPath] = value
            return nil
        }
    }
}
