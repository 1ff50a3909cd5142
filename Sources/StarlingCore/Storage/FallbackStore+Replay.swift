import Synchronization

/// The replay of a `FallbackStore`'s spool into its primary (README "SQLite fallback").
extension FallbackStore {
    /// While spooling: probes the primary every `probeInterval` through the replay's own line
    /// (never the live path's pool, which may still be backing off); when it answers, migrates
    /// it (a start on the spool), replays the spool and goes back to the primary.
    func probeAndReplay() async {
        defer { replayer = nil }
        while !Task.isCancelled {
            try? await Task.sleep(for: probeInterval)
            let line = self.line
            // Not on any acknowledgement's path: a connection may take its time to be made (a
            // loaded machine), and a probe cut short would start the next one from scratch.
            if case .committed = await attempt({ try await line.ping() }, timeout: .seconds(5), onTimeout: { line.reset() }) {
            } else {
                continue
            }
            if !migrated {
                guard case .committed = await attempt({ try await self.primary.migrate() }, timeout: .seconds(30)) else { continue }
                migrated = true
            }
            let spooled = status.spooledBatches
            logger.notice(
                "\(primary.name) answers again: replaying \(spooled) spooled batches (\(status.spooledBytes) bytes) while new commits queue behind them"
            )
            setMode(.replaying)
            switch await replay() {
            case .committed:
                let (seconds, replayed) = statusBox.withLock { status in
                    let seconds = status.outageStarted.map { (ContinuousClock.now - $0).seconds } ?? 0
                    status.outageSeconds += seconds
                    status.outageStarted = nil
                    status.lastError = nil
                    return (seconds, status.replayedOperations)
                }
                logger.notice(
                    "spool replayed: back on \(primary.name) after \(Int(seconds.rounded())) s (\(replayed) operations replayed since start)"
                )
                if status.stateDeferred, let onRecovered { onRecovered() }
                return
            case .refused(let error):
                // The database's own words (postgres-nio hides them from `description`).
                logger.error(
                    "\(primary.name) refused a replayed batch (retrying in \(probeInterval)): \(String(String(reflecting: error).prefix(800)))"
                )
                setMode(.spooling)
            case .unreachable where Task.isCancelled:
                logger.notice("replay stopped: the node is stopping; \(status.spooledBatches) batches stay in the spool for its next start")
                setMode(.spooling)
                return
            case .unreachable(let why):
                logger.warning("\(primary.name) went away again during the replay (\(why)): spooling")
                statusBox.withLock { $0.lastError = why }
                setMode(.spooling)
            }
        }
    }

    /// Applies the spool to the primary from its head until it is empty, then goes direct
    /// (between two awaits: no batch can reach the spool after the last look at it).
    func replay() async -> Attempt {
        defer {
            handingOver = false
            let waiters = handoverWaiters
            handoverWaiters.removeAll()
            statusBox.withLock { $0.commitsWaitingForReplay = 0 }
            for waiter in waiters { waiter.resume() }
        }
        let begun = await beginReplay()
        guard case .committed = begun else { return begun }
        let line = self.line
        let spoolID = spool.id
        do {
            var pendingCleared = false
            while true {
                // The node is stopping (`stopReplaying`): what is left stays for its next start.
                if Task.isCancelled && !handingOver { return .unreachable("the node is stopping") }
                let head = try await spool.head(limit: 64)
                if head.isEmpty {
                    if spoolAppendsInFlight > 0 {
                        try? await Task.sleep(for: .milliseconds(1))
                        continue
                    }
                    if !pendingCleared {
                        // Best effort: left set, it only makes a claim wait (at most 10 s). New
                        // commits wait meanwhile; the spool is looked at again after this await.
                        handingOver = true
                        _ = await attempt(
                            { try await line.replayPending(spool: spoolID, false) }, timeout: .seconds(5),
                            onTimeout: { line.reset() })
                        pendingCleared = true
                        continue
                    }
                    setMode(.direct)
                    return .committed([])
                }
                let outcome = try await replayTransaction(from: head)
                guard case .committed = outcome else { return outcome }
            }
        } catch {
            return Attempt(error, from: primary)
        }
    }

    /// Before anything is replayed: every commit tried before is decided (`ReplayLine`), what an
    /// earlier replay already applied leaves the spool, and the store says this node is
    /// replaying (claims of sessions it held wait for the end).
    private func beginReplay() async -> Attempt {
        let line = self.line
        let spoolID = spool.id
        let recorded = Recorded()
        let steps: [@Sendable () async throws -> Void] = [
            { try await line.endEarlierSessions() },
            {
                let through = try await line.replayedThrough(spool: spoolID)
                recorded.value.withLock { $0 = through }
            },
            { try await line.replayPending(spool: spoolID, true) }
        ]
        for step in steps {
            let outcome = await attempt(step, timeout: .seconds(15), onTimeout: { line.reset() })
            guard case .committed = outcome else { return outcome }
        }
        do {
            let done = recorded.value.withLock { $0 }
            if done > 0 { try await spool.remove(through: done) }
            try await refreshTotals()
            return .committed([])
        } catch {
            return Attempt(error, from: primary)
        }
    }

    /// Replays one transaction from the spool's `head`, with the mark of the last batch it holds.
    private func replayTransaction(from head: [SpooledBatch]) async throws -> Attempt {
        let line = self.line
        var (operations, last) = try Self.transaction(from: head, atMost: replayBatch)
        let count = operations.count
        // What is left fits in this transaction: commits arriving from now on wait
        // for it and then go to the primary (those appending now finish first).
        if last == head[head.count - 1].sequence && head.count < 64 { handingOver = true }
        operations.append(.markReplayed(spool: spool.id, through: last))
        let replayed = operations
        // A transaction of at most `replayBatch` operations takes well under a second; one
        // that does not answer in 10 s is on a connection that is gone (G7: the replay
        // must not hang on it).
        let outcome = await attempt({ try await line.apply(replayed) }, timeout: .seconds(10), onTimeout: { line.reset() })
        guard case .committed = outcome else { return outcome }
        try await spool.remove(through: last)
        let transactions = statusBox.withLock {
            $0.replayedOperations += UInt64(count)
            $0.replayedBatchesTotal += 1
            return $0.replayedBatchesTotal
        }
        try await refreshTotals()
        if let pauseReplayAfter, transactions >= pauseReplayAfter {
            logger.warning("replay paused after \(transactions) transactions (STARLING_TEST_REPLAY_PAUSE)")
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        return outcome
    }

    /// The operations of the next replay transaction: spool batches from the head, in order,
    /// until `atMost` operations, their ingest records marked `replayed`; and the last batch's
    /// sequence. Each spool batch was one safe transaction of the live group commit; merged, a
    /// QoS 2 packet id used again after its PUBREL would look like a re-send of the first use
    /// (`IngestRecord.rounds`), so such a batch starts the next transaction instead.
    public static func transaction(from head: [SpooledBatch], atMost limit: Int) throws -> (operations: [StoreOperation], last: Int64) {
        var operations: [StoreOperation] = []
        var last = head[0].sequence
        var qos2: Set<IngestRecord.DedupKey> = []
        for batch in head {
            if !operations.isEmpty && operations.count >= limit { break }
            let decoded = try SpoolCoding.decode(batch.data)
            let keys = StoreOperation.unfenced(decoded).compactMap { operation -> IngestRecord.DedupKey? in
                guard case .ingest(let record) = operation, record.dedup == .qos2 else { return nil }
                return record.dedupKey
            }
            if !operations.isEmpty && !qos2.isDisjoint(with: keys) { break }
            qos2.formUnion(keys)
            operations += decoded.map { Self.replayed($0, inDoubt: batch.inDoubt) }
            last = batch.sequence
        }
        return (operations, last)
    }

    /// An operation as replayed: its ingest records (also those under a fence) marked so.
    static func replayed(_ operation: StoreOperation, inDoubt: Bool) -> StoreOperation {
        switch operation {
        case .ingest(var record):
            record.replayed = true
            record.mayBeStored = inDoubt
            return .ingest(record)
        case .fenced(let fence, let guarded):
            return .fenced(fence, guarded.map { replayed($0, inDoubt: inDoubt) })
        default:
            return operation
        }
    }

    func refreshTotals() async throws {
        let totals = try await spool.totals()
        statusBox.withLock {
            $0.spooledBatches = totals.batches
            $0.spooledBytes = totals.bytes
        }
    }
}

/// What the primary recorded of a replay, read with a time limit.
private final class Recorded: Sendable {
    let value = Mutex<Int64>(0)
}
