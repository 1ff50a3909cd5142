import Foundation
import StarlingApp
import StarlingTesting
import Testing

@Suite struct TOMLTests {
    // MARK: The broker configuration example

    /// The fragment the conformance suites and operators use (the end-to-end tests start a broker with it).
    @Test func brokerConfigurationExample() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../interop/nosubscribe.toml")
        let root = try TOML.parse(try String(contentsOf: file, encoding: .utf8))
        #expect(root.keys == ["mqtt", "authorization"])
        #expect(root["mqtt"] == .table(["max_keepalive": .integer(60)]))
        let rule: TOMLTable = [
            "permission": .string("deny"), "action": .string("subscribe"), "filter": .string("test/nosubscribe")
        ]
        #expect(root["authorization"] == .table(["rules": .array([.table(rule)])]))
        let rules = try #require(root["authorization"]?.tableValue?["rules"]?.arrayValue)
        #expect(rules.count == 1)
        #expect(rules[0].tableValue?.keys == ["permission", "action", "filter"])
    }

    // MARK: Structure

    @Test func emptyDocumentsAndComments() throws {
        #expect(try TOML.parse("").isEmpty)
        #expect(try TOML.parse("\n\n  # only a comment\n\t\n").isEmpty)
        #expect(try TOML.parse("\u{FEFF}a = 1") == ["a": .integer(1)])
        #expect(try TOML.parse("a = 1 # comment\r\nb = 2\r\n") == ["a": .integer(1), "b": .integer(2)])
    }

    @Test func keys() throws {
        let root = try TOML.parse(
            """
            bare_key-1 = 1
            1234 = 2
            "quoted key" = 3
            'literal "key"' = 4
            "" = 5
            "\\u00e9t\\u00e9" = 6
            """)
        #expect(root.keys == ["bare_key-1", "1234", "quoted key", "literal \"key\"", "", "été"])
    }

    @Test func dottedKeys() throws {
        let root = try TOML.parse(
            """
            name.first = "Ada"
            name . last = "Lovelace"
            site."google.com" = true
            3.14159 = "pi"
            """)
        #expect(root["name"] == .table(["first": .string("Ada"), "last": .string("Lovelace")]))
        #expect(root["site"] == .table(["google.com": .boolean(true)]))
        #expect(root["3"] == .table(["14159": .string("pi")]))
    }

    @Test func tablesAndNestedTables() throws {
        let root = try TOML.parse(
            """
            top = 0
            [server]
            port = 1883
            [server.tls]
            enabled = false
            [ "quoted" . 'other' ]
            x = 1
            [a.b.c]
            d = 1
            [a]   # defining a super-table after its sub-table is allowed
            e = 2
            [fruit]
            apple.color = "red"
            [fruit.apple.texture]   # sub-tables of dotted-key tables are allowed
            smooth = true
            """)
        #expect(root.keys == ["top", "server", "quoted", "a", "fruit"])
        #expect(root["server"] == .table(["port": .integer(1883), "tls": .table(["enabled": .boolean(false)])]))
        #expect(root["quoted"] == .table(["other": .table(["x": .integer(1)])]))
        #expect(root["a"] == .table(["b": .table(["c": .table(["d": .integer(1)])]), "e": .integer(2)]))
        #expect(
            root["fruit"]
                == .table([
                    "apple": .table(["color": .string("red"), "texture": .table(["smooth": .boolean(true)])])
                ]))
    }

    @Test func arraysOfTables() throws {
        let root = try TOML.parse(
            """
            [[listeners]]
            port = 1883
            [listeners.tls]
            enabled = false

            [[listeners]]
            port = 8883
            [[listeners.extra]]
            n = 1
            [[listeners.extra]]
            n = 2

            [[empty]]
            [[empty]]
            """)
        #expect(
            root["listeners"]
                == .array([
                    .table(["port": .integer(1883), "tls": .table(["enabled": .boolean(false)])]),
                    .table(["port": .integer(8883), "extra": .array([.table(["n": .integer(1)]), .table(["n": .integer(2)])])])
                ]))
        #expect(root["empty"] == .array([.table([:]), .table([:])]))
    }

    // MARK: Strings

    @Test func basicStrings() throws {
        let root = try TOML.parse(
            #"""
            a = "quote \" backslash \\ newline \n tab \t cr \r bs \b ff \f"
            b = "\u00E9 \U0001F600 tab:	."
            c = ""
            d = "# not a comment"
            """#)
        #expect(root["a"] == .string("quote \" backslash \\ newline \n tab \t cr \r bs \u{08} ff \u{0C}"))
        #expect(root["b"] == .string("é 😀 tab:\t."))
        #expect(root["c"] == .string(""))
        #expect(root["d"] == .string("# not a comment"))
    }

    @Test func literalStrings() throws {
        let root = try TOML.parse(
            #"""
            path = 'C:\Users\nodejs\templates'
            regex = '<\i\c*\s*>'
            quoted = 'Tom "Dubs" Preston-Werner'
            """#)
        #expect(root["path"] == .string(#"C:\Users\nodejs\templates"#))
        #expect(root["regex"] == .string(#"<\i\c*\s*>"#))
        #expect(root["quoted"] == .string(#"Tom "Dubs" Preston-Werner"#))
    }

    @Test func multiLineBasicStrings() throws {
        let root = try TOML.parse(
            #"""
            a = """
            Roses are red
            Violets are blue"""
            b = """
            The quick brown \
              fox jumps over \
                the lazy dog."""
            c = """\
                   The quick brown \

                   fox.\
                   """
            d = """Here are two quotation marks: "". Simple enough."""
            e = """Here are three quotation marks: ""\"."""
            f = """"This," she said, "is just a pointless statement.""""
            g = """tab\tand \u0041"""
            """#)
        #expect(root["a"] == .string("Roses are red\nViolets are blue"))
        #expect(root["b"] == .string("The quick brown fox jumps over the lazy dog."))
        #expect(root["c"] == .string("The quick brown fox."))
        #expect(root["d"] == .string(#"Here are two quotation marks: "". Simple enough."#))
        #expect(root["e"] == .string(#"Here are three quotation marks: """."#))
        #expect(root["f"] == .string(#""This," she said, "is just a pointless statement.""#))
        #expect(root["g"] == .string("tab\tand A"))
        #expect(try TOML.parse("s = \"\"\"\r\nline1\r\nline2\"\"\"")["s"] == .string("line1\nline2"))
        #expect(try TOML.parse(#"s = """""""#)["s"] == .string(""))
    }

    @Test func multiLineLiteralStrings() throws {
        let root = try TOML.parse(
            #"""
            regex2 = '''I [dw]on't need \d{2} apples'''
            lines = '''
            The first newline is
            trimmed in raw strings.
               All other whitespace
               is preserved.
            '''
            quot15 = '''Here are fifteen quotation marks: """""""""""""""'''
            apos15 = "Here are fifteen apostrophes: '''''''''''''''"
            str = ''''That,' she said, 'is still pointless.''''
            """#)
        #expect(root["regex2"] == .string(#"I [dw]on't need \d{2} apples"#))
        #expect(root["lines"] == .string("The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n"))
        #expect(root["quot15"] == .string("Here are fifteen quotation marks: " + String(repeating: "\"", count: 15)))
        #expect(root["apos15"] == .string("Here are fifteen apostrophes: " + String(repeating: "'", count: 15)))
        #expect(root["str"] == .string("'That,' she said, 'is still pointless.'"))
    }

    // MARK: Numbers, booleans, date-times

    @Test func integers() throws {
        let root = try TOML.parse(
            """
            a = +99
            b = 42
            c = 0
            d = -17
            e = 1_000
            f = 5_349_221
            g = 0xDEADBEEF
            h = 0xdead_beef
            i = 0o755
            j = 0b1101_0110
            k = -0
            l = 9223372036854775807
            m = -9223372036854775808
            n = 0x00ff
            """)
        let expected: [(String, Int64)] = [
            ("a", 99), ("b", 42), ("c", 0), ("d", -17), ("e", 1000), ("f", 5_349_221), ("g", 0xDEADBEEF),
            ("h", 0xDEADBEEF), ("i", 0o755), ("j", 0b1101_0110), ("k", 0), ("l", .max), ("m", .min), ("n", 255)
        ]
        for (key, value) in expected { #expect(root[key] == .integer(value), "\(key)") }
    }

    @Test func floats() throws {
        let root = try TOML.parse(
            """
            a = +1.0
            b = 3.1415
            c = -0.01
            d = 5e+22
            e = 1e06
            f = -2E-2
            g = 6.626e-34
            h = 224_617.445_991_228
            i = inf
            j = +inf
            k = -inf
            l = nan
            m = -nan
            n = 0.0
            o = -0e0
            """)
        let expected: [(String, Double)] = [
            ("a", 1), ("b", 3.1415), ("c", -0.01), ("d", 5e22), ("e", 1e6), ("f", -0.02), ("g", 6.626e-34),
            ("h", 224_617.445_991_228), ("i", .infinity), ("j", .infinity), ("k", -.infinity), ("n", 0), ("o", 0)
        ]
        for (key, value) in expected { #expect(root[key] == .float(value), "\(key)") }
        #expect(root["l"]?.floatValue?.isNaN == true)
        #expect(root["m"]?.floatValue?.isNaN == true)
    }

    @Test func booleans() throws {
        #expect(try TOML.parse("t = true\nf = false") == ["t": .boolean(true), "f": .boolean(false)])
    }

    @Test func dateTimesAreKeptAsText() throws {
        let root = try TOML.parse(
            """
            odt1 = 1979-05-27T07:32:00Z
            odt2 = 1979-05-27T00:32:00-07:00
            odt3 = 1979-05-27T00:32:00.999999+07:00
            odt4 = 1979-05-27 07:32:00Z
            ldt = 1979-05-27T07:32:00
            ld = 2024-02-29
            lt = 00:32:00.999999
            """)
        #expect(root["odt1"] == .datetime("1979-05-27T07:32:00Z"))
        #expect(root["odt2"] == .datetime("1979-05-27T00:32:00-07:00"))
        #expect(root["odt3"] == .datetime("1979-05-27T00:32:00.999999+07:00"))
        #expect(root["odt4"] == .datetime("1979-05-27 07:32:00Z"))
        #expect(root["ldt"] == .datetime("1979-05-27T07:32:00"))
        #expect(root["ld"] == .datetime("2024-02-29"))
        #expect(root["lt"] == .datetime("00:32:00.999999"))
    }

    // MARK: Arrays and inline tables

    @Test func arrays() throws {
        let root = try TOML.parse(
            """
            empty = []
            ints = [ 1, 2, 3 ]
            nested = [ [ 1, 2 ], ["a", 'b'] ]
            mixed = [ 0.1, "x", true, { k = 1 } ]
            multi = [
              1,   # first
              # a comment line
              2,   # trailing comma allowed
            ]
            blank = [

            ]
            """)
        #expect(root["empty"] == .array([]))
        #expect(root["ints"] == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(root["nested"] == .array([.array([.integer(1), .integer(2)]), .array([.string("a"), .string("b")])]))
        #expect(root["mixed"] == .array([.float(0.1), .string("x"), .boolean(true), .table(["k": .integer(1)])]))
        #expect(root["multi"] == .array([.integer(1), .integer(2)]))
        #expect(root["blank"] == .array([]))
    }

    @Test func inlineTables() throws {
        let root = try TOML.parse(
            """
            name = { first = "Tom", last = "Preston-Werner" }
            point = {x=1,y=2}
            animal = { type.name = "pug", type.legs = 4 }
            empty = {}
            nested = { a = { b = [ { c = 1 } ] } }
            """)
        #expect(root["name"] == .table(["first": .string("Tom"), "last": .string("Preston-Werner")]))
        #expect(root["point"] == .table(["x": .integer(1), "y": .integer(2)]))
        #expect(root["animal"] == .table(["type": .table(["name": .string("pug"), "legs": .integer(4)])]))
        #expect(root["empty"] == .table([:]))
        #expect(root["nested"] == .table(["a": .table(["b": .array([.table(["c": .integer(1)])])])]))
    }

    // MARK: API

    @Test func tableAPI() throws {
        var table = try TOML.parse("b = 1\na = 2\nc = 3")
        #expect(table.keys == ["b", "a", "c"])
        #expect(table.map(\.key) == ["b", "a", "c"])
        #expect(table.count == 3)
        #expect(table["missing"] == nil)
        #expect(table == ["a": .integer(2), "c": .integer(3), "b": .integer(1)])  // order-insensitive equality
        table["a"] = nil
        #expect(table.keys == ["b", "c"])
        #expect(table["c"] == .integer(3))
        table["d"] = .string("x")
        #expect(table.keys == ["b", "c", "d"])
        #expect(table["d"]?.stringValue == "x")
        #expect(table["b"]?.integerValue == 1)
        #expect(table["b"]?.stringValue == nil)
    }

    @Test func valueDescription() throws {
        let root = try TOML.parse(#"a = [1, "x\"", { "b c" = true, d = inf }]"# + "\nt = 07:32:00")
        #expect(root.description == #"{a = [1, "x\"", {"b c" = true, d = inf}], t = 07:32:00}"#)
    }

    @Test func errorDescription() {
        let error = #expect(throws: TOMLError.self) {
            try TOML.parse("[mqtt]\nmax_keepalive 60\n")
        }
        #expect(error?.line == 2)
        #expect(error?.column == 15)
        #expect(error?.message == #"expected '=' after key "max_keepalive""#)
        #expect(error?.description == #"line 2, column 15: expected '=' after key "max_keepalive""#)
    }

    // MARK: Invalid documents

    struct Invalid: Sendable, CustomTestStringConvertible {
        let name: String
        let document: String
        let line: Int
        var mentions: String? = nil
        var testDescription: String { name }
    }

    static let invalidDocuments: [Invalid] = [
        Invalid(name: "unterminated basic string", document: "a = 1\nb = \"abc\nc = 2", line: 2),
        Invalid(name: "unterminated literal string", document: "a = 'abc", line: 1),
        Invalid(name: "unterminated multi-line string", document: "a = 1\nb = \"\"\"abc\n\ndef\"\"", line: 2),
        Invalid(name: "unterminated multi-line literal", document: "a = '''abc", line: 1),
        Invalid(name: "too many closing quotes", document: "a = \"\"\"abc\"\"\"\"\"\"", line: 1),
        Invalid(name: "missing =", document: "[mqtt]\nmax_keepalive 60", line: 2, mentions: "max_keepalive"),
        Invalid(name: "missing value", document: "a = \n", line: 1),
        Invalid(name: "key without value at end", document: "a = 1\nb", line: 2),
        Invalid(name: "two pairs on one line", document: "a = 1 b = 2", line: 1),
        Invalid(name: "duplicate key", document: "a = 1\nb = 2\na = 3", line: 3, mentions: "\"a\""),
        Invalid(name: "duplicate key in table", document: "[t]\nx = 1\nx = 2", line: 3, mentions: "t.x"),
        Invalid(name: "duplicate quoted key", document: "a = 1\n\"a\" = 2", line: 2, mentions: "\"a\""),
        Invalid(name: "duplicate table", document: "[x]\na = 1\n[y]\n[x]", line: 4, mentions: "\"x\""),
        Invalid(name: "super-table defined twice", document: "[a]\n[a.b]\n[a]", line: 3, mentions: "\"a\""),
        Invalid(name: "table redefines key", document: "a = 1\n[a]", line: 2, mentions: "\"a\""),
        Invalid(
            name: "table redefines dotted table", document: "[fruit]\napple.color = 'red'\n[fruit.apple]", line: 3, mentions: "fruit.apple"),
        Invalid(name: "dotted key extends header table", document: "[a.b.c]\nz = 9\n[a]\nb.c.t = 1", line: 4, mentions: "a.b"),
        Invalid(name: "dotted key over value", document: "a = 1\na.b = 2", line: 2, mentions: "\"a\""),
        Invalid(name: "extend inline table with header", document: "a = { b = 1 }\n[a]", line: 2, mentions: "\"a\""),
        Invalid(name: "header over dotted table in array element", document: "[[a]]\nb.c = 1\n[a.b]", line: 3, mentions: "a.b"),
        Invalid(name: "inline table extended inside inline table", document: "a = { b = { c = 1 }, b.d = 2 }", line: 1),
        Invalid(name: "extend inline table with dotted key", document: "a = { b = 1 }\na.c = 2", line: 2),
        Invalid(name: "extend inline table with sub-header", document: "a = { b = 1 }\n[a.c]", line: 2),
        Invalid(name: "duplicate key in inline table", document: "x = 0\na = { b = 1, b = 2 }", line: 2, mentions: "\"b\""),
        Invalid(name: "invalid escape", document: "a = 1\nb = \"\\q\"", line: 2, mentions: "\\q"),
        Invalid(name: "invalid escape space", document: "b = \"\\ \"", line: 1),
        Invalid(name: "short unicode escape", document: "\nb = \"\\u12\"", line: 2),
        Invalid(name: "surrogate unicode escape", document: "b = \"\\uD800\"", line: 1),
        Invalid(name: "out-of-range unicode escape", document: "b = \"\\U00110000\"", line: 1),
        Invalid(name: "double underscore", document: "\na = 1__0", line: 2, mentions: "1__0"),
        Invalid(name: "leading zero", document: "a = 01", line: 1, mentions: "01"),
        Invalid(name: "leading underscore", document: "a = _1", line: 1),
        Invalid(name: "trailing underscore", document: "a = 1_", line: 1),
        Invalid(name: "signed hex", document: "a = +0x1F", line: 1),
        Invalid(name: "empty hex", document: "a = 0x", line: 1),
        Invalid(name: "bad octal digit", document: "a = 0o8", line: 1),
        Invalid(name: "uppercase prefix", document: "a = 0X1F", line: 1),
        Invalid(name: "integer overflow", document: "a = 9223372036854775808", line: 1, mentions: "out of range"),
        Invalid(name: "hex overflow", document: "a = 0x1_0000_0000_0000_0000", line: 1, mentions: "out of range"),
        Invalid(name: "float without fraction digits", document: "a = 1.", line: 1),
        Invalid(name: "float without integer digits", document: "a = .5", line: 1),
        Invalid(name: "float with empty exponent", document: "a = 1e", line: 1),
        Invalid(name: "float with leading zero", document: "a = 03.14", line: 1),
        Invalid(name: "float underscore at dot", document: "a = 1_.0", line: 1),
        Invalid(name: "capitalized boolean", document: "a = True", line: 1),
        Invalid(name: "infinity spelled out", document: "a = infinity", line: 1),
        Invalid(name: "invalid date", document: "a = 1979-02-30", line: 1),
        Invalid(name: "invalid time", document: "a = 24:00:00", line: 1),
        Invalid(name: "unclosed array", document: "a = [1, 2\n", line: 1),
        Invalid(name: "unclosed multi-line array", document: "x = 1\na = [\n  1,\n  2,\n", line: 2),
        Invalid(name: "array missing comma", document: "a = [1 2]", line: 1),
        Invalid(name: "array with empty element", document: "a = [1,,2]", line: 1),
        Invalid(name: "unclosed inline table", document: "a = { b = 1", line: 1),
        Invalid(name: "inline table trailing comma", document: "a = { b = 1, }", line: 1),
        Invalid(name: "newline in inline table", document: "a = { b = 1,\n c = 2 }", line: 1),
        Invalid(name: "array of tables after table", document: "[a]\n[[a]]", line: 2, mentions: "\"a\""),
        Invalid(name: "table after array of tables", document: "[[a]]\n[a]", line: 2, mentions: "\"a\""),
        Invalid(name: "array of tables over static array", document: "a = [1]\n[[a]]", line: 2, mentions: "\"a\""),
        Invalid(name: "control character in string", document: "a = 1\nb = \"x\u{01}y\"", line: 2, mentions: "U+0001"),
        Invalid(name: "DEL in literal string", document: "a = 'x\u{7F}'", line: 1, mentions: "U+007F"),
        Invalid(name: "control character in comment", document: "# ok\n# bad \u{00}", line: 2),
        Invalid(name: "bare carriage return", document: "a = 1\r", line: 1),
        Invalid(name: "unclosed table header", document: "[a\nb = 1", line: 1),
        Invalid(name: "unclosed array of tables header", document: "[[a]\nb = 1", line: 1),
        Invalid(name: "empty table header", document: "[]", line: 1),
        Invalid(name: "multi-line string key", document: "\"\"\"k\"\"\" = 1", line: 1),
        Invalid(name: "invalid bare key", document: "\na/b = 1", line: 2)
    ]

    @Test(arguments: invalidDocuments)
    func invalidDocument(_ invalid: Invalid) {
        let error = #expect(throws: TOMLError.self) { try TOML.parse(invalid.document) }
        #expect(error?.line == invalid.line, "\(error?.description ?? "")")
        #expect((error?.column ?? 0) >= 1)
        if let mentions = invalid.mentions {
            #expect(error?.message.contains(mentions) == true, "\(error?.description ?? "")")
        }
    }

    @Test func errorPointsAtDuplicateKey() {
        let error = #expect(throws: TOMLError.self) { try TOML.parse("port = 1\n  port = 2") }
        #expect(error?.line == 2)
        #expect(error?.column == 3)
        #expect(error?.message == #"key "port" is already defined"#)
    }

    // MARK: Robustness

    @Test func nestingDepthIsBounded() throws {
        let ok = "a = " + String(repeating: "[", count: TOML.maxDepth) + String(repeating: "]", count: TOML.maxDepth)
        #expect(throws: Never.self) { try TOML.parse(ok) }
        let deepHeader = "[" + Array(repeating: "t", count: TOML.maxDepth).joined(separator: ".") + "]"
        #expect(throws: Never.self) { try TOML.parse(deepHeader) }
        for depth in [TOML.maxDepth + 1, 10_000] {
            #expect(throws: TOMLError.self) { try TOML.parse("a = " + String(repeating: "[", count: depth)) }
            #expect(throws: TOMLError.self) { try TOML.parse("a = " + String(repeating: "{ b = ", count: depth)) }
            #expect(throws: TOMLError.self) { try TOML.parse("[" + Array(repeating: "t", count: depth).joined(separator: ".") + "]") }
            // `k.k.….k = 1` with n parts creates n - 1 tables.
            #expect(throws: TOMLError.self) { try TOML.parse(Array(repeating: "k", count: depth + 1).joined(separator: ".") + " = 1") }
        }
        let mixed = String(repeating: "[{a=", count: 40)
        #expect(throws: TOMLError.self) { try TOML.parse("x = " + mixed) }
    }

    /// Every prefix and many mutations of a realistic document must parse or throw, never crash.
    @Test func neverCrashesOnTruncatedOrMutatedInput() {
        let document = #"""
            # Starling
            [mqtt]
            max_keepalive = 60
            name = "broker \u00e9 \U0001F600"
            path = 'C:\x'
            text = """
            multi \
              line"""
            raw = '''
            raw'''
            hex = 0xFF_FF
            float = -1.5e-3
            when = 1979-05-27 07:32:00-08:00
            list = [ 1, [2, 3], { a.b = "c" }, ] # done
            [[authorization.rules]]
            permission = "deny"
            "quoted key".x = true
            """#
        let scalars = Array(document.unicodeScalars)
        for end in 0...scalars.count {
            _ = try? TOML.parse(String(String.UnicodeScalarView(scalars[0..<end])))
        }
        let alphabet: [Unicode.Scalar] = Array(#"[]{}=,.#"'\ _-+:0xe\#n\#r\#tabé"#.unicodeScalars) + ["\u{0}", "\u{7F}"]
        var rng = SplitMix64(seed: 0x5EED)
        for _ in 0..<3_000 {
            var mutated = scalars
            for _ in 0..<Int(rng.next() % 4 + 1) {
                let position = Int(rng.next() % UInt64(mutated.count))
                let scalar = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                switch rng.next() % 3 {
                case 0: mutated[position] = scalar
                case 1: mutated.insert(scalar, at: position)
                default: mutated.remove(at: position)
                }
            }
            _ = try? TOML.parse(String(String.UnicodeScalarView(mutated)))
        }
    }
}
