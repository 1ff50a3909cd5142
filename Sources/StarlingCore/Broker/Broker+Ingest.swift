import Crypto
import MQTTCodec
import NIOCore

extension Broker {
    /// Queues the ingest row of an incoming PUBLISH with the writes its ack waits for (G1, G2).
    /// QoS 2 re-sends are caught before this (in memory) and again in the store.
    func ingest(_ publish: MQTTPublish, topic: String, connection: Connection) {
        let ingest = configuration.ingest
        guard persistence != nil, ingest.covers(topic) else { return }
        let dedup: IngestRecord.Dedup =
            switch publish.qos {
            case .atMostOnce: .none
            case .atLeastOnce: .qos1(dup: publish.dup, contentOnly: ingest.dedup == .content)
            case .exactlyOnce: .qos2
            }
        if publish.qos == .exactlyOnce, connection.session?.isStored != true { clientsWithStoredQoS2.insert(connection.clientID) }
        writes.append(
            .ingest(
                IngestRecord(
                    receivedAt: clock.wallClockMilliseconds(), clientID: connection.clientID, username: connection.username,
                    packetID: publish.packetID, topic: topic, payload: publish.payload, qos: publish.qos.rawValue, retain: publish.retain,
                    contentType: publish.properties.contentType, userProperties: publish.properties.userProperties,
                    contentHash: Self.contentHash(topic: topic, payload: publish.payload), nodeID: ingest.nodeID, dedup: dedup)))
    }

    /// SHA-256 of the topic name, a zero byte, and the payload (docs/architecture.md, "The ingest bridge").
    static func contentHash(topic: String, payload: ByteBuffer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: Array(topic.utf8))
        hasher.update(data: [0])
        payload.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }
}
