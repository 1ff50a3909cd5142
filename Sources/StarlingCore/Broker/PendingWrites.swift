/// The store writes of the event being handled (docs/architecture.md "Durability: the group
/// commit"): collected while a packet, a tick or a peer's message is handled, and committed at
/// its end or with its acknowledgement; the sessions given stored deliveries, which send them once
/// that commit is in; and the ids this node generates for messages (and, in a cluster,
/// sequences). Owned by the broker, on its loop.
struct PendingWrites {
    private(set) var operations: [StoreOperation] = []
    private var awaiting: [(session: Session, sequence: Int64)] = []
    /// The last id generated (`nextID`).
    var lastID: Int64 = 0

    /// How many operations are collected (a mark for `fence(from:with:)`).
    var count: Int { operations.count }

    mutating func append(_ operation: StoreOperation) { operations.append(operation) }

    mutating func append(contentsOf more: [StoreOperation]) { operations += more }

    /// The next id of this node's.
    mutating func nextID() -> Int64 {
        lastID += 1
        return lastID
    }

    /// `session` was given a stored delivery with `sequence`: sent once this event's writes commit.
    mutating func awaitCommit(of session: Session, sequence: Int64) { awaiting.append((session, sequence)) }

    /// Wraps what was collected from `start` on in `fence` (G2, G4: committed only while no
    /// later claim holds the session). False when nothing was collected since `start`.
    mutating func fence(from start: Int, with fence: SessionFence) -> Bool {
        guard start < operations.count else { return false }
        let guarded = Array(operations[start...])
        operations.removeSubrange(start...)
        operations.append(.fenced(fence, guarded))
        return true
    }

    /// Everything collected, and the sessions that wait for its commit; both emptied.
    mutating func take() -> (operations: [StoreOperation], awaiting: [(session: Session, sequence: Int64)]) {
        defer {
            operations.removeAll(keepingCapacity: true)
            awaiting.removeAll(keepingCapacity: true)
        }
        return (operations, awaiting)
    }
}
