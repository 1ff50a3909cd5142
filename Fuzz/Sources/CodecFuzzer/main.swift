// libFuzzer entry point for the MQTT decoder. For each input, as server and as client, for
// every protocol version: frame and decode every packet; whatever decodes must re-encode to
// bytes that decode to the same packet. Any crash, trap or mismatch is a finding.
import MQTTCodec
import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    for role in [MQTTRole.server, .client] {
        for version in [MQTTProtocolVersion?.none, .v3_1, .v3_1_1, .v5] {
            if role == .client && version == nil { continue }
            var buffer = ByteBuffer(bytes: bytes)
            var decoder = MQTTPacketDecoder(role: role, version: version, maximumPacketSize: 1 << 16)
            while true {
                let packet: MQTTPacket
                do {
                    guard let next = try decoder.next(from: &buffer) else { break }
                    packet = next
                } catch {
                    break
                }
                let negotiated = decoder.version ?? .v5
                var encoded = packet.encoded(version: negotiated)
                precondition(encoded.readableBytes == packet.encodedSize(version: negotiated), "encodedSize disagrees with encode")
                let isConnect = if case .connect = packet { true } else { false }
                var again = MQTTPacketDecoder(role: role, version: isConnect ? nil : negotiated, maximumPacketSize: 1 << 17)
                let redecoded = try? again.next(from: &encoded)
                precondition(redecoded == packet, "round trip changed \(packet) into \(String(describing: redecoded))")
            }
        }
    }
    return 0
}
