import MQTTCodec
import NIOCore
public import StarlingCore

/// A claim waiting for its batch.
struct PendingClaim {
    var clientID: String
    var subscribed: Bool
    var completion: (SessionClaim?) -> Void
}

/// Session claims, in batches (G1, G2).
///
/// A claim runs four steps: the row names this node (one statement, a new epoch: the old
/// holder's writes stop counting), the peers are told and answer with the deliveries they ended
/// lately (the old holder lets the session go and disconnects its client), the previous holder's
/// spool replay is waited for (bounded) when the session has subscriptions, and the session is
/// read. Claims that arrive while others run wait and go together in the next batch: one
/// statement for all their rows, one round of the peers (a packet each, answered each), one
/// wait per previous holder, one read for all. A lone claim is a batch of one and waits for
/// nothing; a reconnect storm (a node's thousands of clients at once) costs a few statements
/// per batch instead of per client. Each client keeps the epoch and the answer it would have
/// had alone; a client claimed twice goes in two batches, in order.
///
/// Sessions with subscriptions and sessions without go in separate lanes: reading a
/// subscriber's session may take seconds (its backlog, tens of thousands of queued messages
/// after an outage), and a device that only publishes must not wait for it (issue 20: a
/// device's pause under a second).
extension ClusterRouter {
    /// Batches that run at once in each lane: the store's pool serves them side by side.
    static let concurrentClaimBatches = 2
    /// At most this many claims in one batch (each takes a packet id of the peers' round).
    static let claimBatchLimit = 256

    public func claimSession(_ clientID: String, subscribed: Bool, completion: @escaping (SessionClaim?) -> Void) {
        guard ownership != nil else { return completion(SessionClaim(state: StoredState(), epoch: 0)) }
        claimQueue.append(PendingClaim(clientID: clientID, subscribed: subscribed, completion: completion))
        startClaimBatches()
    }

    private func startClaimBatches() {
        for lane in [false, true] {
            while claimBatchesRunning[lane, default: 0] < Self.concurrentClaimBatches, !claimQueue.isEmpty {
                let batch = takeClaimBatch(subscribed: lane)
                guard !batch.isEmpty else { break }
                claimBatchesRunning[lane, default: 0] += 1
                runClaimBatch(batch, lane: lane)
            }
        }
    }

    /// The next claims of a lane in order, each client once and none of a running batch (a
    /// later claim of a client waits until the earlier one has ended, in either lane), at most
    /// `claimBatchLimit`.
    func takeClaimBatch(subscribed lane: Bool) -> [PendingClaim] {
        var batch: [PendingClaim] = []
        var rest: [PendingClaim] = []
        var held = claiming
        for claim in claimQueue {
            if claim.subscribed == lane, batch.count < Self.claimBatchLimit, held.insert(claim.clientID).inserted {
                batch.append(claim)
            } else {
                // The other lane's, or a client of this batch or of a running one: a client's
                // claims keep their order.
                held.insert(claim.clientID)
                rest.append(claim)
            }
        }
        claimQueue = rest
        claiming.formUnion(batch.map(\.clientID))
        return batch
    }

    private func runClaimBatch(_ batch: [PendingClaim], lane: Bool) {
        guard let ownership else {
            claimBatchesRunning[lane, default: 0] -= 1
            claiming.subtract(batch.map(\.clientID))
            for claim in batch { claim.completion(SessionClaim(state: StoredState(), epoch: 0)) }
            return startClaimBatches()
        }
        let clientIDs = batch.map(\.clientID)
        let subscribed = Set(batch.filter(\.subscribed).map(\.clientID))
        let done = NIOLoopBound(batch.map(\.completion), eventLoop: loop)
        Task { [self] in
            let claims = await claim(clientIDs, subscribed: subscribed, in: ownership)
            loop.execute { [self] in
                claimBatchesRunning[lane, default: 0] -= 1
                claiming.subtract(clientIDs)
                for (clientID, completion) in zip(clientIDs, done.value) { completion(claims?[clientID]) }
                startClaimBatches()
            }
        }
    }

    /// The four steps for `clientIDs` together; nil when the store could not be reached.
    private func claim(_ clientIDs: [String], subscribed: Set<String>, in ownership: any SessionOwnershipStore) async -> [String:
        SessionClaim]?
    {
        let what = clientIDs.count == 1 ? "session \(clientIDs[0])" : "\(clientIDs.count) sessions"
        do {
            let started = ContinuousClock.now
            // Once more after a failure: a pool renewed after an outage fails what it held.
            let owned: [String: (epoch: Int64, previousOwner: String?)]
            do {
                owned = try await ownership.claimOwnership(of: clientIDs)
            } catch {
                try await Task.sleep(for: .milliseconds(100))
                owned = try await ownership.claimOwnership(of: clientIDs)
            }
            let ownedAt = ContinuousClock.now
            let ended = try await askPeers(clientIDs, epochs: owned)
            let answered = ContinuousClock.now
            // The previous holder still replaying its spool (after an outage) may hold a
            // session's ended deliveries there: read the session once they are in the store (at
            // most `replayWait`: a holder that stays away is not waited for longer). A session
            // without subscriptions has no deliveries to end: a device that only publishes is
            // served at once (what its spool holds of the device's QoS 2 flow is caught by the
            // replay's de-duplication).
            let holders = Set(clientIDs.filter(subscribed.contains).compactMap { owned[$0]?.previousOwner })
            let deadline = ContinuousClock.now + replayWait
            for holder in holders.sorted() {
                while ContinuousClock.now < deadline, try await ownership.isReplaying(node: holder) {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let waited = ContinuousClock.now
            let states = try await ownership.claimSessions(clientIDs)
            let read = ContinuousClock.now
            if read - started > .milliseconds(500) {
                // A device waits for this: say where the time went.
                logger.notice(
                    "the claim of \(what) took \((read - started).milliseconds) ms: ownership \((ownedAt - started).milliseconds), peers \((answered - ownedAt).milliseconds), \(holders.isEmpty ? "no previous holder" : "\(holders.sorted())")'s replay \((waited - answered).milliseconds), read \((read - waited).milliseconds)"
                )
            }
            var claims: [String: SessionClaim] = [:]
            for clientID in clientIDs {
                claims[clientID] = SessionClaim(
                    state: states[clientID] ?? StoredState(), epoch: owned[clientID]?.epoch ?? 0, ended: ended[clientID] ?? [])
            }
            return claims
        } catch {
            logger.error("cannot claim the \(what) from the store: \(error)")
            return nil
        }
    }

    /// Tells the peers of the claims (a packet each, in one round) and collects, per client, the
    /// deliveries they answer they ended.
    private func askPeers(_ clientIDs: [String], epochs: [String: (epoch: Int64, previousOwner: String?)]) async throws -> [String:
        Set<Int64>]
    {
        try await loop.flatSubmit { [self] in
            let promise = loop.makePromise(of: [String: Set<Int64>].self)
            var ended: [String: Set<Int64>] = [:]
            let packets: [(UInt16) -> MQTTPacket] = clientIDs.map { clientID in
                let epoch = epochs[clientID]?.epoch ?? 0
                return { ClusterLinkHandler.claimed(clientID, epoch: epoch, packetID: $0) }
            }
            broadcast(
                packets, what: clientIDs.count == 1 ? "the claim of session \(clientIDs[0])" : "the claims of \(clientIDs.count) sessions",
                timeout: claimAckTimeout,
                answers: { index, properties in ended[clientIDs[index], default: []].formUnion(PeerMessages.ended(from: properties)) }
            ) {
                // A holder that did not answer may commit rows for the sessions later.
                self.schedulePickup(in: self.routeAckTimeout)
                promise.succeed(ended)
            }
            return promise.futureResult
        }.get()
    }
}
