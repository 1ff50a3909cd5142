// A small, dependency-free TOML v1.0 parser for the broker's configuration file.
//
// Limits: date-times are validated but kept as their source text (`TOMLValue.datetime`);
// nesting of tables and arrays is limited to `TOML.maxDepth` levels.

/// A TOML value.
public enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    /// An offset/local date-time, local date or local time, validated and kept as written
    /// (e.g. `"1979-05-27T07:32:00Z"`, `"1979-05-27 07:32:00"`, `"07:32:00"`).
    case datetime(String)
    case array([TOMLValue])
    case table(TOMLTable)

    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }
    public var integerValue: Int64? { if case .integer(let v) = self { v } else { nil } }
    public var floatValue: Double? { if case .float(let v) = self { v } else { nil } }
    public var boolValue: Bool? { if case .boolean(let v) = self { v } else { nil } }
    public var arrayValue: [TOMLValue]? { if case .array(let v) = self { v } else { nil } }
    public var tableValue: TOMLTable? { if case .table(let v) = self { v } else { nil } }
}

/// A TOML table: keys in insertion (document) order, with O(1) lookup by key.
///
/// Equality ignores key order (TOML tables are unordered).
public struct TOMLTable: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: String, value: TOMLValue)

    /// The entries in insertion order.
    public private(set) var entries: [Element] = []
    private var index: [String: Int] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (String, TOMLValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    /// The keys in insertion order.
    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// Reads, replaces, appends (new key) or removes (`nil`) the value for `key`.
    public subscript(key: String) -> TOMLValue? {
        get { index[key].map { entries[$0].value } }
        set {
            if let i = index[key] {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    index = [:]
                    for (j, entry) in entries.enumerated() { index[entry.key] = j }
                }
            } else if let newValue {
                index[key] = entries.count
                entries.append((key, newValue))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[Element]> { entries.makeIterator() }

    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        lhs.count == rhs.count && lhs.entries.allSatisfy { rhs[$0.key] == $0.value }
    }
}

extension TOMLValue: CustomStringConvertible {
    /// An inline, TOML-like rendering for diagnostics (e.g. `[1, "x", {a = true}]`).
    public var description: String {
        switch self {
        case .string(let v): v.debugDescription
        case .integer(let v): String(v)
        case .float(let v): v.isNaN ? "nan" : v.isInfinite ? (v < 0 ? "-inf" : "inf") : String(v)
        case .boolean(let v): String(v)
        case .datetime(let v): v
        case .array(let v): "[" + v.map(\.description).joined(separator: ", ") + "]"
        case .table(let v): v.description
        }
    }
}

extension TOMLTable: CustomStringConvertible {
    public var description: String {
        let pairs = entries.map { key, value in
            let bare = !key.isEmpty && key.unicodeScalars.allSatisfy(isBareKeyChar)
            return "\(bare ? key : key.debugDescription) = \(value)"
        }
        return "{" + pairs.joined(separator: ", ") + "}"
    }
}

/// A parse error with a 1-based line and column (counted in Unicode scalars).
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        (self.line, self.column, self.message) = (line, column, message)
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}

/// Entry point of the parser.
public enum TOML {
    /// Maximum number of nested tables and arrays below the root; deeper documents are rejected.
    public static let maxDepth = 64

    /// Parses a complete TOML document into its root table.
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }
}

// MARK: - Parser

/// A mutable table under construction; remembers how it was created to enforce TOML's
/// "define once" rules.
private final class TableNode {
    enum Origin {
        case implicit  // created as the parent of a `[a.b]` header; may be defined later by `[a]`
        case header  // defined by a `[header]` / `[[header]]`
        case dotted  // created by a dotted key (`a.b = 1`) or as an inline table
    }
    enum Entry {
        case value(TOMLValue)  // plain values, static arrays and inline tables: closed
        case table(TableNode)
        case tableArray([TableNode])
    }

    var origin: Origin
    let path: [String]
    let depth: Int
    private(set) var order: [String] = []
    private(set) var entries: [String: Entry] = [:]

    init(path: [String], depth: Int, origin: Origin) {
        (self.path, self.depth, self.origin) = (path, depth, origin)
    }

    func set(_ key: String, _ entry: Entry) {
        if entries[key] == nil { order.append(key) }
        entries[key] = entry
    }

    func toTable() -> TOMLTable {
        var table = TOMLTable()
        for key in order {
            switch entries[key] {
            case .value(let v)?: table[key] = v
            case .table(let node)?: table[key] = .table(node.toTable())
            case .tableArray(let nodes)?: table[key] = .array(nodes.map { .table($0.toTable()) })
            case nil: break
            }
        }
        return table
    }
}

private struct TOMLParser {
    private let chars: [Unicode.Scalar]
    private var pos = 0
    private let root = TableNode(path: [], depth: 0, origin: .header)
    private var current: TableNode

    init(_ text: String) {
        chars = Array(text.unicodeScalars)
        if chars.first == "\u{FEFF}" { pos = 1 }  // byte-order mark
        current = root
    }

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        while true {
            skipWhitespace()
            guard let c = peek() else { break }
            if c == "[" {
                try parseHeader()
            } else if c != "#" && c != "\n" && c != "\r" {
                try parseKeyValue(into: current)
            }
            try expectLineEnd()
        }
        return root.toTable()
    }

    // MARK: Characters

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let i = pos + offset
        return i >= 0 && i < chars.count ? chars[i] : nil
    }

    private var atNewline: Bool { peek() == "\n" || (peek() == "\r" && peek(1) == "\n") }

    private mutating func consumeNewline() -> Bool {
        guard atNewline else { return false }
        pos += peek() == "\r" ? 2 : 1
        return true
    }

    private mutating func skipWhitespace() {
        while let c = peek(), c == " " || c == "\t" { pos += 1 }
    }

    private mutating func skipComment() throws(TOMLError) {
        guard peek() == "#" else { return }
        pos += 1
        while let c = peek(), !atNewline {
            if isControl(c) { throw error("control character \(describe(c)) is not allowed in a comment") }
            pos += 1
        }
    }

    /// Whitespace, comments and newlines (inside arrays).
    private mutating func skipBlank() throws(TOMLError) {
        while true {
            skipWhitespace()
            try skipComment()
            if !consumeNewline() { return }
        }
    }

    /// After a key/value pair or header: optional whitespace and comment, then newline or end.
    private mutating func expectLineEnd() throws(TOMLError) {
        skipWhitespace()
        try skipComment()
        if pos >= chars.count || consumeNewline() { return }
        throw error("expected a newline, found \(describe(peek()))")
    }

    private func error(_ message: String, at index: Int? = nil) -> TOMLError {
        let end = min(index ?? pos, chars.count)
        var line = 1, column = 1
        for i in 0..<end where !(i == 0 && chars[i] == "\u{FEFF}") {
            if chars[i] == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        return TOMLError(line: line, column: column, message: message)
    }

    // MARK: Keys and tables

    /// Parses a simple or dotted key (surrounding whitespace allowed) into its parts.
    private mutating func parseKey() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipWhitespace()
            guard let c = peek() else { throw error("expected a key, found end of input") }
            if c == "\"" || c == "'" {
                if peek(1) == c && peek(2) == c { throw error("a multi-line string cannot be used as a key") }
                parts.append(try parseString())
            } else {
                var key = ""
                while let c = peek(), isBareKeyChar(c) { key.unicodeScalars.append(c); pos += 1 }
                if key.isEmpty { throw error("expected a key, found \(describe(c))") }
                parts.append(key)
            }
            skipWhitespace()
            guard peek() == "." else { return parts }
            pos += 1
        }
    }

    private mutating func parseKeyValue(into table: TableNode) throws(TOMLError) {
        let start = pos
        let key = try parseKey()
        guard peek() == "=" else { throw error("expected '=' after key \(quoted(key))") }
        pos += 1
        skipWhitespace()
        let value = try parseValue(depth: table.depth + key.count - 1)
        try assign(value, to: key, in: table, at: start)
    }

    /// Stores `value` under a dotted key, creating intermediate tables as needed.
    private func assign(_ value: TOMLValue, to key: [String], in table: TableNode, at start: Int) throws(TOMLError) {
        var node = table
        for part in key.dropLast() {
            switch node.entries[part] {
            case nil: node = try makeTable(in: node, named: part, origin: .dotted, at: start)
            case .table(let child)? where child.origin == .dotted: node = child
            case .value?: throw error("key \(quoted(node.path + [part])) is already defined as a value", at: start)
            case .table?, .tableArray?:
                let path = quoted(node.path + [part])
                throw error("table \(path) is already defined and cannot be extended with dotted keys", at: start)
            }
        }
        guard let last = key.last else { return }
        guard node.entries[last] == nil else {
            throw error("key \(quoted(node.path + [last])) is already defined", at: start)
        }
        node.set(last, .value(value))
    }

    private func checkDepth(_ depth: Int, at start: Int? = nil) throws(TOMLError) {
        guard depth <= TOML.maxDepth else { throw error("tables and arrays are nested too deeply (limit \(TOML.maxDepth))", at: start) }
    }

    /// A new table named `name` below `parent` (not yet stored), within the depth limit.
    private func newTable(in parent: TableNode, named name: String, origin: TableNode.Origin, at start: Int) throws(TOMLError) -> TableNode
    {
        try checkDepth(parent.depth + 1, at: start)
        return TableNode(path: parent.path + [name], depth: parent.depth + 1, origin: origin)
    }

    private func makeTable(in parent: TableNode, named name: String, origin: TableNode.Origin, at start: Int) throws(TOMLError) -> TableNode
    {
        let child = try newTable(in: parent, named: name, origin: origin, at: start)
        parent.set(name, .table(child))
        return child
    }

    /// Parses `[a.b]` or `[[a.b]]` and makes the named table current.
    private mutating func parseHeader() throws(TOMLError) {
        let start = pos
        let isArray = peek(1) == "["
        pos += isArray ? 2 : 1
        let key = try parseKey()
        guard peek() == "]" && (!isArray || peek(1) == "]") else {
            throw error("expected '\(isArray ? "]]" : "]")' to close the header \(quoted(key))")
        }
        pos += isArray ? 2 : 1
        var node = root
        for part in key.dropLast() {
            switch node.entries[part] {
            case nil: node = try makeTable(in: node, named: part, origin: .implicit, at: start)
            case .table(let child)?: node = child
            case .tableArray(let elements)?:
                guard let last = elements.last else { throw error("empty array of tables \(quoted(node.path + [part]))", at: start) }
                node = last
            case .value?: throw error("key \(quoted(node.path + [part])) is already defined as a value", at: start)
            }
        }
        guard let name = key.last else { return }
        let path = node.path + [name]
        switch (node.entries[name], isArray) {
        case (nil, false):
            current = try makeTable(in: node, named: name, origin: .header, at: start)
        case (.table(let table)?, false) where table.origin == .implicit:
            table.origin = .header
            current = table
        case (.table?, false): throw error("table \(quoted(path)) is already defined", at: start)
        case (.tableArray?, false): throw error("table \(quoted(path)) is already defined as an array of tables", at: start)
        case (nil, true), (.tableArray?, true):
            let element = try newTable(in: node, named: name, origin: .header, at: start)
            var elements: [TableNode] = []
            if case .tableArray(let existing)? = node.entries[name] { elements = existing }
            node.set(name, .tableArray(elements + [element]))
            current = element
        case (.table?, true): throw error("cannot define array of tables \(quoted(path)): already defined as a table", at: start)
        case (.value?, _): throw error("key \(quoted(path)) is already defined as a value", at: start)
        }
    }

    // MARK: Values

    /// Parses a value nested inside `depth` tables/arrays below the root.
    private mutating func parseValue(depth: Int) throws(TOMLError) -> TOMLValue {
        switch peek() {
        case "\"", "'": return .string(try parseString())
        case "[": return try parseArray(depth: depth + 1)
        case "{": return try parseInlineTable(depth: depth + 1)
        default: return try parseBareValue()
        }
    }

    /// Basic (`"`), literal (`'`) and their multi-line (`"""`, `'''`) forms.
    private mutating func parseString() throws(TOMLError) -> String {
        let start = pos
        guard let quote = peek() else { throw error("expected a string") }
        let basic = quote == "\""
        let multiline = peek(1) == quote && peek(2) == quote
        pos += multiline ? 3 : 1
        if multiline { _ = consumeNewline() }  // a newline right after the opening delimiter is trimmed
        var out = ""
        while true {
            guard let c = peek() else {
                throw error(multiline ? "unterminated multi-line string" : "unterminated string", at: start)
            }
            if c == quote {
                guard multiline else { pos += 1; return out }
                var run = 0
                while peek(run) == quote { run += 1 }
                if run > 5 { throw error("too many quotes at the end of a multi-line string") }
                // Up to two quotes may directly precede the closing delimiter.
                for _ in 0..<(run >= 3 ? run - 3 : run) { out.unicodeScalars.append(quote) }
                pos += run
                if run >= 3 { return out }
            } else if atNewline {
                guard multiline else { throw error("unterminated string", at: start) }
                _ = consumeNewline()
                out.unicodeScalars.append("\n")
            } else if c == "\\" && basic {
                if multiline && skipLineEndingBackslash() { continue }
                out.unicodeScalars.append(try parseEscape())
            } else if isControl(c) {
                throw error("control character \(describe(c)) is not allowed in a string")
            } else {
                out.unicodeScalars.append(c)
                pos += 1
            }
        }
    }

    /// In multi-line basic strings, `\` at the end of a line removes it and all following whitespace.
    private mutating func skipLineEndingBackslash() -> Bool {
        var i = pos + 1
        while i < chars.count && (chars[i] == " " || chars[i] == "\t") { i += 1 }
        let saved = pos
        pos = i
        guard atNewline else { pos = saved; return false }
        while let c = peek(), c == " " || c == "\t" || atNewline { pos += c == "\r" ? 2 : 1 }
        return true
    }

    private mutating func parseEscape() throws(TOMLError) -> Unicode.Scalar {
        let start = pos
        pos += 1
        guard let c = peek() else { throw error("incomplete escape sequence", at: start) }
        pos += 1
        let simple: [Unicode.Scalar: Unicode.Scalar] = [
            "\"": "\"", "\\": "\\", "b": "\u{08}", "t": "\t", "n": "\n", "f": "\u{0C}", "r": "\r"
        ]
        if let scalar = simple[c] { return scalar }
        switch c {
        case "u", "U":
            let count = c == "u" ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<count {
                guard let d = peek(), let digit = digitValue(d), digit < 16 else {
                    throw error("invalid unicode escape: \\\(c) needs \(count) hexadecimal digits", at: start)
                }
                value = value &* 16 &+ UInt32(digit)
                pos += 1
            }
            guard let scalar = Unicode.Scalar(value) else {
                throw error(
                    "invalid unicode escape: U+\(String(value, radix: 16, uppercase: true)) is not a Unicode scalar value", at: start)
            }
            return scalar
        default:
            throw error("invalid escape sequence \\\(isControl(c) || c == " " ? describe(c) : String(c))", at: start)
        }
    }

    private mutating func parseArray(depth: Int) throws(TOMLError) -> TOMLValue {
        let start = pos
        try checkDepth(depth)
        pos += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            if peek() == "]" { pos += 1; return .array(items) }
            if peek() == nil { throw error("unterminated array", at: start) }
            items.append(try parseValue(depth: depth))
            try skipBlank()
            switch peek() {
            case ",": pos += 1
            case "]": pos += 1; return .array(items)
            case nil: throw error("unterminated array", at: start)
            case let c: throw error("expected ',' or ']' in array, found \(describe(c))")
            }
        }
    }

    /// `{ a = 1, b.c = "x" }`: single line, no trailing comma (TOML 1.0); closed once parsed.
    private mutating func parseInlineTable(depth: Int) throws(TOMLError) -> TOMLValue {
        let start = pos
        try checkDepth(depth)
        pos += 1
        let table = TableNode(path: [], depth: depth, origin: .dotted)
        skipWhitespace()
        if peek() == "}" { pos += 1; return .table(table.toTable()) }
        while true {
            try parseKeyValue(into: table)
            skipWhitespace()
            switch peek() {
            case ",":
                pos += 1
                skipWhitespace()
                if peek() == "}" { throw error("trailing comma is not allowed in an inline table") }
            case "}": pos += 1; return .table(table.toTable())
            case nil: throw error("unterminated inline table", at: start)
            case let c: throw error("expected ',' or '}' in inline table, found \(describe(c))")
            }
        }
    }

    /// Booleans, numbers and date-times.
    private mutating func parseBareValue() throws(TOMLError) -> TOMLValue {
        let start = pos
        var token = ""
        scanBareToken(into: &token)
        // A date and a time may be separated by a space.
        if token.utf8.count == 10, DateTimeScanner.isValid(token), peek() == " ", let d = peek(1), ("0"..."9").contains(d) {
            pos += 1
            token += " "
            scanBareToken(into: &token)
        }
        if token.isEmpty { throw error("expected a value, found \(describe(peek()))") }
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        // Dates start with `dddd-`, times with `dd:`; no number does.
        let bytes = Array(token.utf8)
        func digits(_ n: Int) -> Bool { bytes.count > n && bytes[0..<n].allSatisfy { (48...57).contains($0) } }
        if (digits(4) && bytes[4] == UInt8(ascii: "-")) || (digits(2) && bytes[2] == UInt8(ascii: ":")) {
            guard DateTimeScanner.isValid(token) else { throw error("invalid date-time '\(token)'", at: start) }
            return .datetime(token)
        }
        return try parseNumber(token, at: start)
    }

    private mutating func scanBareToken(into token: inout String) {
        while let c = peek(), isBareKeyChar(c) || c == "+" || c == "." || c == ":" {
            token.unicodeScalars.append(c)
            pos += 1
        }
    }

    private func parseNumber(_ token: String, at start: Int) throws(TOMLError) -> TOMLValue {
        var invalid: TOMLError { error("invalid number '\(token)'", at: start) }
        let hasSign = token.first == "+" || token.first == "-"
        let body = hasSign ? token.dropFirst() : Substring(token)
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where body.hasPrefix(prefix) {
            let digits = body.dropFirst(2)
            guard !hasSign, Self.validDigits(digits, radix: radix) else { throw invalid }
            guard let value = Int64(digits.filter { $0 != "_" }, radix: radix) else {
                throw error("integer '\(token)' is out of range", at: start)
            }
            return .integer(value)
        }
        // [sign] int [. frac] [e [sign] exp], with no leading zeros in int.
        let mantissa = body.prefix { $0 != "e" && $0 != "E" }
        let exponent = mantissa.count < body.count ? body.dropFirst(mantissa.count + 1) : nil
        let intPart = mantissa.prefix { $0 != "." }
        let fraction = intPart.count < mantissa.count ? mantissa.dropFirst(intPart.count + 1) : nil
        guard Self.validDigits(intPart, radix: 10), intPart == "0" || intPart.first != "0" else { throw invalid }
        if let fraction, !Self.validDigits(fraction, radix: 10) { throw invalid }
        if let exponent {
            let digits = exponent.first == "+" || exponent.first == "-" ? exponent.dropFirst() : exponent
            guard Self.validDigits(digits, radix: 10) else { throw invalid }
        }
        let cleaned = token.filter { $0 != "_" }
        if fraction == nil && exponent == nil {
            guard let value = Int64(cleaned) else { throw error("integer '\(token)' is out of range", at: start) }
            return .integer(value)
        }
        guard let value = Double(cleaned) else { throw invalid }
        return .float(value)
    }

    /// Non-empty ASCII digits of `radix`, underscores only between digits.
    private static func validDigits(_ text: Substring, radix: Int) -> Bool {
        var previousWasDigit = false
        for c in text.unicodeScalars {
            if c == "_" {
                guard previousWasDigit else { return false }
                previousWasDigit = false
            } else {
                guard let d = digitValue(c), d < radix else { return false }
                previousWasDigit = true
            }
        }
        return previousWasDigit
    }

    // MARK: Helpers

    private func quoted(_ parts: [String]) -> String { "\"" + parts.joined(separator: ".") + "\"" }

    private func describe(_ c: Unicode.Scalar?) -> String {
        guard let c else { return "end of input" }
        let names: [Unicode.Scalar: String] = ["\n": "newline", "\r": "carriage return", "\t": "tab", " ": "space"]
        if let name = names[c] { return name }
        guard isControl(c) else { return "'\(c)'" }
        let hex = String(c.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}

private func isControl(_ c: Unicode.Scalar) -> Bool { (c.value < 0x20 && c != "\t") || c.value == 0x7F }

private func isBareKeyChar(_ c: Unicode.Scalar) -> Bool {
    switch c {
    case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
    default: false
    }
}

/// Value of an ASCII hexadecimal digit (0-9, a-f, A-F).
private func digitValue(_ c: Unicode.Scalar) -> Int? {
    switch c {
    case "0"..."9": Int(c.value) - 48
    case "a"..."f": Int(c.value) - 87
    case "A"..."F": Int(c.value) - 55
    default: nil
    }
}

/// Validates RFC 3339 date-times as TOML allows them: offset or local date-time, local date, local time.
private struct DateTimeScanner {
    let bytes: [UInt8]
    var i = 0

    static func isValid(_ text: String) -> Bool {
        var s = DateTimeScanner(bytes: Array(text.utf8))
        if s.bytes.count >= 3 && s.bytes[2] == UInt8(ascii: ":") { return s.time() && s.atEnd }
        guard s.date() else { return false }
        if s.atEnd { return true }
        guard s.literal("T") || s.literal("t") || s.literal(" "), s.time() else { return false }
        if s.atEnd { return true }
        return s.offset() && s.atEnd
    }

    var atEnd: Bool { i == bytes.count }

    mutating func literal(_ c: Unicode.Scalar) -> Bool {
        guard i < bytes.count, UInt32(bytes[i]) == c.value else { return false }
        i += 1
        return true
    }

    mutating func number(_ digits: Int, _ range: ClosedRange<Int>) -> Int? {
        guard i + digits <= bytes.count else { return nil }
        var value = 0
        for k in i..<(i + digits) {
            guard (48...57).contains(bytes[k]) else { return nil }
            value = value * 10 + Int(bytes[k] - 48)
        }
        i += digits
        return range.contains(value) ? value : nil
    }

    mutating func date() -> Bool {
        guard let year = number(4, 0...9999), literal("-"), let month = number(2, 1...12), literal("-"),
            let day = number(2, 1...31)
        else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return day <= days[month - 1]
    }

    mutating func time() -> Bool {
        guard number(2, 0...23) != nil, literal(":"), number(2, 0...59) != nil, literal(":"),
            number(2, 0...60) != nil
        else { return false }
        if literal(".") {
            let start = i
            while i < bytes.count && (48...57).contains(bytes[i]) { i += 1 }
            return i > start
        }
        return true
    }

    mutating func offset() -> Bool {
        if literal("Z") || literal("z") { return true }
        guard literal("+") || literal("-") else { return false }
        return number(2, 0...23) != nil && literal(":") && number(2, 0...59) != nil
    }
}
