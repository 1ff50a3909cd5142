import NIOCore
import StarlingCore
import Testing

@Suite("Ingest text forms")
struct IngestTextTests {
    @Test(
        "payload_json is set for valid JSON (objects, arrays, scalars) and only then",
        arguments: [
            (#"{"t":21.5,"id":"d-1"}"#, true),
            (#"  [1, 2, {"a": null}]"#, true),
            ("42", true),
            (#""text""#, true),
            ("true", true),
            (#"{"t":21.5"#, false),  // truncated
            ("21.5 C", false),  // not JSON
            ("", false),
            (#"{"a":"\u0000"}"#, false),  // jsonb cannot hold U+0000
            (#"{"a":"x\u0000y"}"#, false),
            (#"{"a":"\u0001"}"#, true)
        ])
    func json(payload: String, isJSON: Bool) {
        let text = IngestText.json(ByteBuffer(string: payload))
        #expect((text != nil) == isJSON)
        if isJSON { #expect(text == payload) }
    }

    @Test("timestamps are UTC with milliseconds")
    func timestamp() {
        #expect(IngestText.sqliteTimestamp(1_764_115_200_007) == "2025-11-26 00:00:00.007")
    }
}
