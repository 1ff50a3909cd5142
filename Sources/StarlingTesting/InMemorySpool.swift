public import NIOCore
public import StarlingCore
import Synchronization

/// A spool in memory, for `FallbackStore` tests without a file.
public final class InMemorySpool: StoreSpool {
    public let id: String
    private let state = Mutex<(next: Int64, batches: [SpooledBatch])>((1, []))

    public init(id: String = "test-spool") {
        self.id = id
    }

    /// The batches it holds, decoded, oldest first.
    public var operations: [[StoreOperation]] {
        state.withLock { $0.batches }.map { (try? SpoolCoding.decode($0.data)) ?? [] }
    }

    /// Whether each batch held was appended in doubt, oldest first.
    public var inDoubt: [Bool] { state.withLock { $0.batches.map(\.inDoubt) } }

    public func append(_ batch: ByteBuffer, inDoubt: Bool) async throws -> Int64 {
        state.withLock { state in
            defer { state.next += 1 }
            state.batches.append(SpooledBatch(sequence: state.next, data: batch, inDoubt: inDoubt))
            return state.next
        }
    }

    public func head(limit: Int) async throws -> [SpooledBatch] {
        state.withLock { Array($0.batches.prefix(limit)) }
    }

    public func remove(through sequence: Int64) async throws {
        state.withLock { $0.batches.removeAll { $0.sequence <= sequence } }
    }

    public func totals() async throws -> (batches: Int, bytes: Int) {
        state.withLock { ($0.batches.count, $0.batches.reduce(0) { $0 + $1.data.readableBytes }) }
    }
}
