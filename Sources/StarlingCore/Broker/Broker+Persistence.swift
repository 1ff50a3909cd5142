import MQTTCodec
import NIOCore

extension Broker {
    /// Runs `then` once `operations`, and every write submitted before them, are committed
    /// (G1: acks wait for what they acknowledge). Without a store, runs it at once. `leftOut`
    /// runs instead of `then` when the store left out what `fence` guards.
    func durably(
        _ operations: [StoreOperation], fence: SessionFence? = nil, then: @escaping () -> Void, leftOut: (() -> Void)? = nil
    ) {
        guard let persistence else { return then() }
        persistence.submit(operations, fence: fence, then: then, leftOut: leftOut)
    }

    /// In a cluster, wraps what was collected from `start` on (the writes one packet of
    /// `connection`, or a QoS 2 delivery to its session, caused: `OutboundFlow`) in the fence
    /// of the connection's claim, so the store commits them
    /// only while no later claim holds the session (G2, G4: a node frozen, then resumed, reads
    /// packets its clients re-sent elsewhere long ago). Returns the fence, if any.
    func fenceCollected(from start: Int, for connection: Connection) -> SessionFence? {
        guard let fence = fence(of: connection) else { return nil }
        return writes.fence(from: start, with: fence) ? fence : nil
    }

    /// In a cluster, a fence with nothing to write: what waits for the commit (an answer that
    /// writes nothing) goes only while the connection's claim still holds its session.
    func fenceNothing(for connection: Connection) -> SessionFence? {
        guard let fence = fence(of: connection) else { return nil }
        writes.append(.fenced(fence, []))
        return fence
    }

    private func fence(of connection: Connection) -> SessionFence? {
        // A connection that took a session this node already held made no claim of its own:
        // the session's epoch is the one this node holds it under.
        guard let epoch = connection.claimEpoch ?? connection.session?.claimEpoch, epoch > 0 else { return nil }
        return SessionFence(clientID: connection.clientID, epoch: epoch)
    }

    /// The store left out a fenced commit: a later claim holds the session of the connection
    /// that sent it (another node took the client over while this one could not tell: frozen,
    /// or cut off), or the store holds a QoS 2 message of the client that this node's copy of
    /// the session does not know (another node stored it after this one read the session:
    /// `StoreOperation.newInboundQoS2`). Nothing it sent is acknowledged; the session is let go
    /// without a write, and the client's next CONNECT reads it again.
    func connectionFenced(_ fence: SessionFence) {
        stats.fencedCommits += 1
        guard let session = sessions[fence.clientID], session.claimEpoch <= fence.epoch else { return }
        logger.warning(
            "the store holds a later state of the session (a later claim, or a QoS 2 message another node stored): what its connection here sent is not committed, and the session is let go",
            metadata: ["mqtt.client_id": "\(fence.clientID)", "claim": "\(fence.epoch)"])
        takeover.letGo(session, to: nil, reason: .sessionTakenOver)
        peers.announceRoutes {}
        flush()
    }

    /// Submits writes nothing waits for (state that, if lost in a crash, only causes a
    /// re-delivery the protocol allows).
    func persist(_ operations: [StoreOperation]) {
        guard let persistence, !operations.isEmpty else { return }
        persistence.submit(operations)
    }

    /// The store passed its backlog limit (true) or caught up (false): publishers are paused
    /// as they publish, and all resumed together.
    func storeBacklogChanged(_ backlogged: Bool) {
        if backlogged {
            stats.storeBacklogs += 1
            return
        }
        for connection in pausedForStore { connection.resumeReading(.store) }
        pausedForStore.removeAll()
    }

    /// The next id of this node's (message ids; sequences in a cluster).
    func nextID() -> Int64 { writes.nextID() }

    /// Commits what routing collected, then marks the new deliveries sendable and runs `then`.
    func commitCollected(fence: SessionFence? = nil, then: (() -> Void)? = nil) {
        let (operations, awaiting) = writes.take()
        if operations.isEmpty && awaiting.isEmpty {
            if let then { durably([], then: then) }
            return
        }
        if awaiting.isEmpty && then == nil {
            // Nothing waits for these (QoS 0 ingest rows, state changes): the writer may
            // gather them a little longer.
            persist(operations)
            return
        }
        durably(
            operations, fence: fence,
            then: { [self] in
                for (session, sequence) in awaiting where sequence > session.durableSequence {
                    session.durableSequence = sequence
                }
                for (session, _) in awaiting { flow.pump(session) }
                then?()
            },
            // Only a fenced commit can be left out (no closure on the unfenced path).
            leftOut: fence == nil || awaiting.isEmpty
                ? nil
                : {
                    // Their rows were left out with the rest: the copies this commit queued here
                    // must not go out once a later commit makes the session's queue durable.
                    for (session, sequence) in awaiting { session.queue.removeAll { $0.sequence == sequence && !$0.committed } }
                })
    }
}

// MARK: Restore (`StateRestore`) and the store's mode

extension Broker {
    /// Rebuilds the state from the store before any listener accepts (`StateRestore.restore`).
    public func restore(_ state: StoredState) { restoring.restore(state) }

    /// Started on the spool (the store unreachable), the node restored nothing; it says so here
    /// and stored sessions are refused until the state comes (`adoptDeferredState`).
    public func restoreDeferred() {
        storeStateDeferred = true
        logger.warning("started without the store's state: stored sessions and retained messages come when the store is back")
    }

    /// The store's state, once it answers after a start on the spool (`StateRestore`).
    public func adoptDeferredState(_ state: StoredState) { restoring.adoptDeferredState(state) }

    /// The store's mode, from `FallbackStore` (both at once: spooling goes to direct only
    /// through replaying, and the withheld PUBRELs wait for the end of the replay:
    /// `OutboundFlow.releaseWithheld`).
    public func storeModeChanged(spooling: Bool, replaying: Bool) {
        let wasOnSpool = storeSpooling || storeReplaying
        storeSpooling = spooling
        storeReplaying = replaying
        if wasOnSpool && !spooling && !replaying { flow.releaseWithheld() }
    }
}
