import MQTTCodec
import NIOCore

extension Broker {
    /// Runs `then` once `operations`, and every write submitted before them, are committed
    /// (G1: acks wait for what they acknowledge). Without a store, runs it at once.
    func durably(_ operations: [StoreOperation], fence: SessionFence? = nil, then: @escaping () -> Void) {
        guard let persistence else { return then() }
        persistence.submit(operations, fence: fence, then: then)
    }

    /// In a cluster, wraps what was collected from `start` on (the writes one packet of
    /// `connection` caused) in the fence of the connection's claim, so the store commits them
    /// only while no later claim holds the session (G2, G4: a node frozen, then resumed, reads
    /// packets its clients re-sent elsewhere long ago). Returns the fence, if any.
    func fenceCollected(from start: Int, for connection: Connection) -> SessionFence? {
        // A connection that took a session this node already held made no claim of its own:
        // the session's epoch is the one this node holds it under.
        guard let epoch = connection.claimEpoch ?? connection.session?.claimEpoch, epoch > 0 else { return nil }
        let fence = SessionFence(clientID: connection.clientID, epoch: epoch)
        return writes.fence(from: start, with: fence) ? fence : nil
    }

    /// The store left out a fenced commit: a later claim holds the session of the connection
    /// that sent it (another node took the client over while this one could not tell: frozen,
    /// or cut off). Nothing it sent is acknowledged; the session is let go without a write.
    func connectionFenced(_ fence: SessionFence) {
        stats.fencedCommits += 1
        guard let session = sessions[fence.clientID], session.claimEpoch <= fence.epoch else { return }
        logger.warning(
            "a later claim holds the session: what its connection here sent is not committed, and the session is let go",
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
        durably(operations, fence: fence) { [self] in
            for (session, sequence) in awaiting where sequence > session.durableSequence {
                session.durableSequence = sequence
            }
            for (session, _) in awaiting { flow.pump(session) }
            then?()
        }
    }

    // MARK: Restore

    /// Rebuilds sessions, subscriptions, queues and retained messages from the store, before any
    /// listener accepts. Sessions that were connected when the broker stopped lost their
    /// connection: their wills are due [MQTT-3.1.2-8]; sessions that expired meanwhile end.
    public func restore(_ state: StoredState) {
        let now = clock.now()
        let wallNow = clock.wallClockMilliseconds()
        var maxID = restoreSessions(state, now: now)
        for stored in state.retained {
            maxID = max(maxID, stored.id)
            var restored = rows.message(stored)
            restored.retain = true
            retained.set(restored)
        }
        // Message ids grow from the wall clock, so they never repeat across restarts even after
        // garbage collection emptied the table.
        writes.lastID = max(writes.lastID, maxID, wallNow * 1000)
        logger.notice(
            "restored \(state.sessions.count) sessions, \(state.subscriptions.count) subscriptions, \(state.deliveries.count) queued or in-flight messages, \(state.retained.count) retained messages"
        )
        // Wills now due and sessions that expired while the broker was down.
        let crashed = state.sessions.filter(\.connected).map(\.clientID)
        for clientID in crashed {
            if let session = sessions[clientID] { persist(rows.sessionRowOperations(session)) }
        }
        tick()
    }

    /// Started on the spool (the store unreachable), the node restored nothing; it says so here
    /// and stored sessions are refused until the state comes (`adoptDeferredState`).
    public func restoreDeferred() {
        storeStateDeferred = true
        logger.warning("started without the store's state: stored sessions and retained messages come when the store is back")
    }

    /// The store's state, loaded once it answers again after a start on the spool: what this
    /// node did meanwhile wins (sessions it serves, retained messages it set), the rest is
    /// restored as at a start.
    public func adoptDeferredState(_ state: StoredState) {
        var state = state
        let held = Set(sessions.keys)
        state.sessions.removeAll { held.contains($0.clientID) }
        state.subscriptions.removeAll { held.contains($0.clientID) }
        state.deliveries.removeAll { held.contains($0.clientID) }
        state.inboundQoS2.removeAll { held.contains($0.clientID) }
        state.retained.removeAll { retained.contains(topic: $0.topic) }
        storeStateDeferred = false
        restore(state)
    }

    /// Rebuilds the sessions of `state` (`RestoredSessions`): all of them at start-up, or one
    /// claimed from the store in a cluster (never one this node holds). Returns the largest
    /// message id seen.
    @discardableResult
    func restoreSessions(_ state: StoredState, now: NIODeadline) -> Int64 {
        let restored = RestoredSessions(state, now: now, clock: clock)
        for session in restored.sessions {
            sessions[session.clientID] = session
            for subscription in session.subscriptions.values {
                index.insert(subscription.filter, subscriber: session.clientID, value: subscription)
                peers.routeAdded(subscription.filter)
            }
        }
        for (clientID, packetID) in restored.otherQoS2 {
            if let session = sessions[clientID] { session.inboundQoS2.insert(packetID) } else { clientsWithStoredQoS2.insert(clientID) }
        }
        for (clientID, sequence) in restored.secondRows {
            if let session = sessions[clientID] { forgetDelivery(sequence, of: session) }
        }
        if !restored.secondRows.isEmpty {
            logger.warning("deleted \(restored.secondRows.count) second row(s) of QoS 2 messages their sessions already had [MQTT-4.3.3]")
        }
        return restored.maxMessageID
    }
}

// MARK: QoS 2 deliveries while the store is this node's spool

extension Broker {
    /// In a cluster, a stored session's PUBREL waits while this node's writes go to its spool
    /// (spooling or replaying): the "released" state is then only here, and a node that takes
    /// the session over meanwhile reads it as sent and sends the PUBLISH again — which a client
    /// that already had the PUBREL takes for a new message (QoS 2 twice). Withheld, the client
    /// holds the message unreleased; the new holder's PUBLISH (the same packet id, DUP) or a
    /// PUBREL sent here once the spool is replayed completes it, once.
    func withholdsReleases(of session: Session) -> Bool {
        cluster != nil && session.isStored && (storeSpooling || storeReplaying)
    }

    /// The store's mode, from `FallbackStore` (both at once: spooling goes to direct only
    /// through replaying, and the withheld PUBRELs wait for the end of the replay).
    public func storeModeChanged(spooling: Bool, replaying: Bool) {
        let wasOnSpool = storeSpooling || storeReplaying
        storeSpooling = spooling
        storeReplaying = replaying
        if wasOnSpool && !spooling && !replaying { releaseWithheld() }
    }

    /// The spool is replayed (the "sent" and "released" states are in the shared store): the
    /// withheld QoS 2 PUBLISH and PUBREL packets go out, to sessions still held here and connected.
    func releaseWithheld() {
        for session in sessions.values where !session.withheldReleases.isEmpty || !session.withheldPublishes.isEmpty {
            let (publishes, releases) = (session.withheldPublishes, session.withheldReleases)
            session.withheldPublishes.removeAll()
            session.withheldReleases.removeAll()
            guard let connection = session.connection, connection.state == .connected else { continue }
            for id in publishes { flow.publishInflight(id, of: session, on: connection) }
            for id in releases where session.inflight[id]?.stage == .released {
                send(.pubrel(MQTTAck(packetID: id)), on: connection)
            }
        }
        flush()
    }
}
