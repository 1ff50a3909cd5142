import MQTTCodec
import NIOCore

/// A session's life on this node: CONNECT (its checks, authentication, the claim in a cluster,
/// the session it gets, CONNACK), the resumption of what was in flight, DISCONNECT and the
/// end of a connection (wills, expiry), and the end of a session. One of the broker's parts
/// (`Broker.lifecycle`), confined to its event loop like the broker.
final class SessionLifecycle {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    func handleConnect(_ connect: MQTTConnect, on connection: Connection) {
        connection.version = connect.version
        let properties = connect.properties
        if connect.version == .v5 {
            connection.requestProblemInformation = properties.requestProblemInformation != 0
        }
        let check = ConnectCheck(configuration: broker.configuration)
        let verdict = check.verdict(
            connect, accepting: broker.accepting, connectedClients: broker.connectedClientCount,
            assignID: { [self] in
                broker.nextAssignedID += 1
                return "auto-\(String(UInt64.random(in: 0..<UInt64.max, using: &broker.randomNumbers), radix: 36))-\(broker.nextAssignedID)"
            },
            mayPublishWill: { [self] topic, clientID in
                broker.authorizer.isAllowed(.publish, topic: topic, clientID: clientID, username: connect.username)
            })
        let terms: ConnectCheck.Terms
        switch verdict {
        case .refuse(let reason, let message, let clientID):
            if let clientID {
                connection.clientID = clientID
                connection.username = connect.username
            }
            return broker.refuse(connection, reason: reason, message: message)
        case .accept(let accepted):
            terms = accepted
        }
        connection.clientID = terms.clientID
        connection.username = connect.username
        connection.keepAlive = terms.keepAlive

        // What the client announces (5.0)
        if connect.version == .v5 {
            connection.clientReceiveMaximum = Int(properties.receiveMaximum ?? .max)
            connection.clientMaximumPacketSize = Int(properties.maximumPacketSize ?? .max)
            connection.clientTopicAliasMaximum = properties.topicAliasMaximum ?? 0
        }

        authenticateThenAccept(connect, terms, on: connection)
    }

    /// Authentication: decided at once, or later off the event loop (password hashing); the
    /// client's next packets wait meanwhile, in order. Then the session is claimed (in a
    /// cluster) and the CONNECT accepted.
    private func authenticateThenAccept(_ connect: MQTTConnect, _ terms: ConnectCheck.Terms, on connection: Connection) {
        let properties = connect.properties
        let request = authenticationRequest(for: connection, password: connect.password)
        let accept = { [self] (authenticationProperties: MQTTProperties) in
            if let problem = outageRefusal(connect, clientID: terms.clientID) {
                return broker.refuse(connection, reason: .serverUnavailable, message: problem)
            }
            // In a cluster the session may be held by the store (or another node): claimed first.
            broker.takeover.claimThenAccept(terms.clientID, on: connection) { [self] in
                acceptConnect(
                    connect, clientID: terms.clientID, assignedID: terms.assignedID, serverKeepAlive: terms.serverKeepAlive,
                    authenticationProperties: authenticationProperties, on: connection)
            }
        }
        if connect.version == .v5, let method = properties.authenticationMethod {
            // Enhanced authentication [MQTT-4.12]: an exchange of AUTH packets before the CONNACK.
            guard let exchange = broker.authenticator.beginEnhancedAuthentication(method: method, request: request) else {
                // [MQTT-4.12.0-1]
                return broker.refuse(
                    connection, reason: .badAuthenticationMethod, message: "authentication method \(method) is not supported")
            }
            let state = ConnectionAuthentication(method: method)
            state.exchange = exchange
            state.resume = accept
            connection.authentication = state
            connection.state = .authenticating
            return enhancedStep(exchange.step(properties.authenticationData), on: connection)
        }
        switch broker.authenticator.authenticate(request) {
        case .decided(let reason):
            guard reason == .success else { return refuseAuthentication(connection, reason: reason) }
            accept([])
        case .pending(let future):
            connection.state = .authenticating
            connection.authentication = ConnectionAuthentication()
            connection.pauseReading(.authentication)
            future.assumeIsolated().whenComplete { [self] result in
                guard connection.state == .authenticating else { return }  // closed meanwhile
                connection.resumeReading(.authentication)
                let reason = (try? result.get()) ?? .unspecifiedError
                let held = connection.authentication?.held ?? []
                connection.authentication = nil
                connection.state = .awaitingConnect
                if reason == .success {
                    accept([])
                    if connection.state == .authenticating {
                        connection.authentication?.held.append(contentsOf: held)  // the session is being claimed
                    } else {
                        for packet in held where connection.state != .closed { broker.handlePacket(packet, on: connection) }
                    }
                } else {
                    refuseAuthentication(connection, reason: reason)
                }
                broker.commitCollected()
                broker.flush()
            }
        }
    }

    /// An AUTH packet while authenticating (CONNECT exchange) or connected (re-authentication
    /// [MQTT-4.12.1]).
    func handleAuth(_ auth: MQTTAuth, on connection: Connection) {
        guard let state = connection.authentication, let method = state.method else {
            // No Authentication Method was accepted in CONNECT [MQTT-4.12.0-7].
            return authenticationError(connection, "AUTH without an authentication method", spec: "MQTT-4.12.0-7")
        }
        guard auth.properties.authenticationMethod == method else {
            return authenticationError(connection, "AUTH with another authentication method than CONNECT's", spec: "MQTT-4.12.0-5")
        }
        switch (auth.reasonCode, state.exchange) {
        case (.continueAuthentication, let exchange?):
            enhancedStep(exchange.step(auth.properties.authenticationData), on: connection)
        case (.reAuthenticate, nil) where connection.state == .connected:
            let request = authenticationRequest(for: connection, password: nil)
            guard let exchange = broker.authenticator.beginEnhancedAuthentication(method: method, request: request) else {
                return broker.fail(connection, .badAuthenticationMethod, "authentication method \(method) is no longer offered")
            }
            state.exchange = exchange
            enhancedStep(exchange.step(auth.properties.authenticationData), on: connection)
        default:
            authenticationError(connection, "AUTH \(auth.reasonCode) out of sequence", spec: "MQTT-4.12.0-2")
        }
    }

    /// What the authenticator is asked about `connection` (its CONNECT already applied).
    private func authenticationRequest(for connection: Connection, password: ByteBuffer?) -> AuthenticationRequest {
        AuthenticationRequest(
            clientID: connection.clientID, username: connection.username, password: password,
            remoteAddress: connection.transport.remoteAddress, version: connection.version,
            isLoopbackClient: connection.transport.isLoopbackClient)
    }

    /// A protocol error in an authentication exchange: CONNACK 0x82 before the CONNACK, else
    /// DISCONNECT 0x82.
    private func authenticationError(_ connection: Connection, _ message: String, spec: String) {
        if connection.state == .authenticating {
            connection.state = .awaitingConnect
            broker.refuse(connection, reason: .protocolError, message: "\(message) [\(spec)]")
        } else {
            broker.fail(connection, .protocolError, message, spec: spec)
        }
    }

    /// Answers one step of an enhanced-authentication exchange: AUTH 0x18, or the outcome —
    /// CONNACK during CONNECT, AUTH 0x00 or DISCONNECT after a re-authentication.
    func enhancedStep(_ step: EnhancedAuthenticationStep, on connection: Connection) {
        guard let state = connection.authentication, let method = state.method else { return }
        let connecting = connection.state == .authenticating
        switch step {
        case .continue(let data):
            broker.send(
                .auth(
                    MQTTAuth(reasonCode: .continueAuthentication, properties: [.authenticationMethod(method), .authenticationData(data)])),
                on: connection)
        case .success(let data):
            state.exchange = nil
            var properties: MQTTProperties = [.authenticationMethod(method)]
            if let data { properties.append(.authenticationData(data)) }
            if connecting {
                let resume = state.resume
                state.resume = nil
                connection.state = .awaitingConnect
                resume?(properties)  // in the CONNACK [MQTT-3.2.2.3.17]
            } else {
                broker.send(.auth(MQTTAuth(reasonCode: .success, properties: properties)), on: connection)  // [MQTT-4.12.1-2]
            }
        case .failure(let reason):
            state.exchange = nil
            if connecting {
                connection.state = .awaitingConnect
                refuseAuthentication(connection, reason: reason)
            } else {
                broker.fail(connection, reason, "re-authentication failed")
            }
        }
    }

    private func refuseAuthentication(_ connection: Connection, reason: MQTTReasonCode) {
        let message =
            reason == .notAuthorized && connection.username == nil
            ? "anonymous access is not allowed here (auth.allow_anonymous)"
            : "bad user name or password"
        broker.refuse(connection, reason: reason, message: message)
    }

    /// What a node cannot do while its shared store is unreachable and it commits to its spool
    /// (README "SQLite fallback"): resume a session it did not load (it started on the spool),
    /// and, in a cluster, take over a session that may be stored or held by another node (that
    /// needs a claim in the store). A clean start of a session that is not stored needs neither.
    func outageRefusal(_ connect: MQTTConnect, clientID: String) -> String? {
        guard broker.sessions[clientID] == nil else { return nil }
        if broker.storeStateDeferred && !connect.cleanStart {
            return "the session store cannot be reached and this node started without it: stored sessions can be resumed once it is back"
        }
        let expiry = connect.version == .v5 ? connect.properties.sessionExpiryInterval ?? 0 : connect.cleanStart ? 0 : 1
        if broker.storeSpooling && broker.cluster != nil && !(connect.cleanStart && expiry == 0) {
            return
                "the session store cannot be reached: a session that may be stored or held by another node can be taken over once it is back"
        }
        return nil
    }

    /// The rest of CONNECT, once the client is authenticated: session, takeover, CONNACK.
    private func acceptConnect(
        _ connect: MQTTConnect, clientID: String, assignedID: String?, serverKeepAlive: UInt16?,
        authenticationProperties: MQTTProperties, on connection: Connection
    ) {
        // Session expiry [MQTT-3.1.2-23]: 3.x Clean Session 0 sessions never expire.
        var expiry: UInt32 =
            connect.version == .v5
            ? (connect.properties.sessionExpiryInterval ?? 0)
            : (connect.cleanStart ? 0 : .max)
        expiry = min(expiry, broker.configuration.maxSessionExpiry)
        closeEarlierConnection(of: clientID)
        let (session, sessionPresent) = sessionFor(connect, clientID: clientID, expiry: expiry)
        if let epoch = connection.claimEpoch { session.claimEpoch = epoch }
        session.version = connect.version
        session.expiryInterval = expiry
        session.expiresAt = nil
        session.username = connect.username
        session.will = connect.will
        session.willDueAt = nil
        session.connection = connection
        connection.session = session
        connection.state = .connecting
        broker.writes.append(contentsOf: broker.rows.sessionRowOperations(session))
        if broker.cluster != nil, broker.persistence != nil, !session.isStored, let will = connect.will {
            // Its session ends with the connection, which may end with this node: a survivor
            // publishes the will from this row if it does (issue 13; EMQX lost them, #1667).
            let token = broker.nextID()
            connection.willToken = token
            broker.writes.append(.saveConnectionWill(StoredConnectionWill(clientID: clientID, token: token, will: will)))
        }
        var ack = MQTTConnAck(sessionPresent: sessionPresent, reasonCode: .success)
        if connect.version == .v5 {
            ack.properties = connackProperties(
                requestedExpiry: connect.properties.sessionExpiryInterval, expiry: expiry, assignedID: assignedID,
                serverKeepAlive: serverKeepAlive, authentication: authenticationProperties)
        }
        // CONNACK once the session is durable; nothing is written before it [MQTT-3.2.0-1].
        broker.commitCollected { [self] in
            guard connection.state == .connecting, connection.session === session else { return }
            connection.state = .connected
            broker.logger.debug(
                "client connected",
                metadata: [
                    "mqtt.client_id": "\(connection.clientID)", "remote": "\(connection.transport.remoteAddress)",
                    "mqtt.version": "\(connection.version)", "session_present": "\(sessionPresent)"
                ])
            broker.send(.connack(ack), on: connection)
            if sessionPresent { resume(session, on: connection) } else { broker.flow.pump(session) }
        }
    }

    /// Takeover [MQTT-3.1.4-3]: the existing connection of this client id is closed.
    private func closeEarlierConnection(of clientID: String) {
        guard let existing = broker.sessions[clientID], let old = existing.connection else { return }
        if old.version == .v5 {
            broker.send(.disconnect(MQTTDisconnect(reasonCode: .sessionTakenOver)), on: old)
        }
        broker.logger.info("session taken over", metadata: ["mqtt.client_id": "\(clientID)"])
        broker.close(old)
    }

    /// The session a CONNECT gets, and whether it was present: clean start discards any
    /// existing session [MQTT-3.1.2-4]; otherwise it resumes [MQTT-3.1.2-5].
    private func sessionFor(_ connect: MQTTConnect, clientID: String, expiry: UInt32) -> (Session, present: Bool) {
        if let existing = broker.sessions[clientID], !connect.cleanStart {
            // A new connection before the Will Delay Interval has passed: no will [MQTT-3.1.3-9].
            existing.willDueAt = nil
            return (existing, true)
        }
        let now = broker.clock.now()
        if let existing = broker.sessions[clientID], existing.isStored {
            endSession(existing, now: now)
        } else {
            if let existing = broker.sessions[clientID] { endSession(existing, now: now) }
            // QoS 2 entries the ingest bridge stored for an earlier, unstored session of
            // this client end with it too; a new session may reuse their packet ids.
            // So does a session the store may hold that this node could not load (started
            // on its spool): the deletion replays before the store's sessions are loaded.
            if broker.clientsWithStoredQoS2.remove(clientID) != nil || broker.storeStateDeferred && broker.persistence != nil {
                broker.writes.append(.deleteSession(clientID: clientID))
            }
        }
        let session = Session(clientID: clientID, version: connect.version, expiryInterval: expiry)
        broker.sessions[clientID] = session
        return (session, false)
    }

    /// A 5.0 CONNACK's properties: what the server decided, its limits, and the authentication's.
    private func connackProperties(
        requestedExpiry: UInt32?, expiry: UInt32, assignedID: String?, serverKeepAlive: UInt16?, authentication: MQTTProperties
    ) -> MQTTProperties {
        var p: MQTTProperties = []
        if let assignedID { p.append(.assignedClientIdentifier(assignedID)) }  // [MQTT-3.2.2-16]
        if let serverKeepAlive { p.append(.serverKeepAlive(serverKeepAlive)) }
        if let requestedExpiry, requestedExpiry != expiry { p.append(.sessionExpiryInterval(expiry)) }
        p.append(.receiveMaximum(broker.configuration.receiveMaximum))
        if broker.configuration.topicAliasMaximum > 0 { p.append(.topicAliasMaximum(broker.configuration.topicAliasMaximum)) }
        if broker.configuration.maximumQoS < .exactlyOnce { p.append(.maximumQoS(broker.configuration.maximumQoS.rawValue)) }
        if !broker.configuration.retainAvailable { p.append(.retainAvailable(0)) }
        p.append(.maximumPacketSize(UInt32(clamping: broker.configuration.maxPacketSize)))
        for property in authentication { p.append(property) }
        return p
    }

    /// Sends again what was in flight when the last connection ended [MQTT-4.4.0-1], then the queue.
    func resume(_ session: Session, on connection: Connection) {
        session.withheldReleases.removeAll()
        session.withheldPublishes.removeAll()
        for id in session.inflightOrder {
            guard let entry = session.inflight[id] else { continue }
            switch entry.stage {
            case .published:
                // Its packet id is durable by now (the CONNACK followed a later commit), unless
                // that commit went to the spool (`startInflight`).
                if entry.outbound.qos == .exactlyOnce && entry.outbound.sequence != nil && broker.flow.withholdsReleases(of: session) {
                    session.withheldPublishes.append(id)
                } else {
                    broker.flow.publishInflight(id, of: session, on: connection)
                }
            case .released:
                if broker.flow.withholdsReleases(of: session) {
                    session.withheldReleases.append(id)
                } else {
                    broker.send(.pubrel(MQTTAck(packetID: id)), on: connection)
                }
            }
        }
        broker.flow.pump(session)
    }

    /// DISCONNECT from the client [MQTT-3.14.4].
    func handleDisconnect(_ disconnect: MQTTDisconnect, on connection: Connection) {
        guard let session = connection.session else { return broker.close(connection) }
        if connection.version == .v5, let expiry = disconnect.properties.sessionExpiryInterval {
            if session.expiryInterval == 0 && expiry != 0 {
                // [MQTT-3.14.2-2 area] Setting a non-zero expiry when CONNECT had 0 is a Protocol Error.
                broker.fail(connection, .protocolError, "Session Expiry Interval was 0 at CONNECT and cannot be set at DISCONNECT")
                return
            }
            session.expiryInterval = min(expiry, broker.configuration.maxSessionExpiry)
        }
        // 0x04 keeps the will; every other reason discards it [MQTT-3.14.4-3].
        connection.publishWillOnClose = disconnect.reasonCode == .disconnectWithWillMessage
        broker.close(connection)
    }

    /// The connection is gone: detach it from its session; schedule or publish the will; end
    /// the session if it does not outlive the connection [MQTT-3.1.2-23].
    func detach(_ connection: Connection) {
        let wasConnected = connection.hasSession
        connection.state = .closed
        forgetWillRow(of: connection)
        guard wasConnected, let session = connection.session, session.connection === connection else { return }
        let now = broker.clock.now()
        session.connection = nil
        connection.outboundAliases.removeAll()
        // QoS 0 messages are not kept for a disconnected client.
        let before = session.queue.count
        session.queue.removeAll { $0.qos == .atMostOnce }
        if session.queue.count != before {
            broker.countDrops(before - session.queue.count, reason: "QoS 0 messages queued for a client that disconnected")
        }

        if connection.publishWillOnClose, let will = session.will {
            let delay = connection.version == .v5 ? will.properties.willDelayInterval ?? 0 : 0
            if delay == 0 || session.expiryInterval == 0 {
                session.will = nil
                publishWill(will, of: session.clientID, now: now)
            } else {
                session.willDueAt = now + .seconds(Int64(delay))  // [MQTT-3.1.3-9]
            }
        } else {
            session.will = nil
        }
        if session.expiryInterval == 0 {
            endSession(session, now: now)
        } else {
            if session.expiryInterval != .max {
                session.expiresAt = now + .seconds(Int64(session.expiryInterval))
            }
            broker.writes.append(contentsOf: broker.rows.sessionRowOperations(session))
        }
    }

    /// The session ends: its will goes out if still pending [MQTT-3.1.3-9], its subscriptions
    /// are removed, and QoS 1 messages it got from shared groups go to other members
    /// [MQTT-4.8.2-5]. QoS 2 ones are not re-sent elsewhere.
    func endSession(_ session: Session, now: NIODeadline) {
        if let old = session.connection {
            session.connection = nil
            old.session = nil
        }
        if let will = session.will, session.willDueAt != nil {
            publishWill(will, of: session.clientID, now: now)
        }
        session.will = nil
        session.willDueAt = nil
        removeSubscriptions(of: session)
        if broker.sessions[session.clientID] === session { broker.sessions[session.clientID] = nil }
        if session.isStored {
            session.isStored = false
            broker.peers.markDirectoryChange(session)
            broker.writes.append(.deleteSession(clientID: session.clientID))
        }
        broker.peers.announceRoutes {}

        var redispatch: [OutboundMessage] = []
        for id in session.inflightOrder {
            if let entry = session.inflight[id], entry.stage == .published, entry.outbound.qos == .atLeastOnce,
                entry.outbound.shareGroup != nil
            {
                redispatch.append(entry.outbound)
            }
        }
        redispatch += session.queue.filter { $0.qos == .atLeastOnce && $0.shareGroup != nil }
        session.inflight.removeAll()
        session.inflightOrder.removeAll()
        session.queue.removeAll()
        for outbound in redispatch {
            guard let group = outbound.shareGroup else { continue }
            broker.publishing.redeliverShared(outbound, group: group, excluding: session.clientID, now: now)
        }
    }

    /// Takes every subscription of `session` out of the index (and this node's routes).
    func removeSubscriptions(of session: Session) {
        for subscription in session.subscriptions.values {
            broker.index.remove(subscription.filter, subscriber: session.clientID)
            broker.peers.routeRemoved(subscription.filter)
        }
        session.subscriptions.removeAll()
    }

    func publishWill(_ will: MQTTWill, of clientID: String, now: NIODeadline) {
        let message = Message(
            topic: will.topic, payload: will.payload, qos: will.qos, retain: will.retain,
            wireProperties: will.properties, publisher: clientID, now: now)
        broker.logger.debug("publishing will", metadata: ["mqtt.client_id": "\(clientID)", "topic": "\(will.topic)"])
        if message.retain && broker.configuration.retainAvailable {
            broker.rows.retain(message)
            broker.cluster?.retainedChanged(message) {}
        }
        let placement = broker.peers.placeShared(message)
        let routed = broker.publishing.route(message, now: now, sharedGroups: placement.selection)
        if broker.cluster != nil {
            // Peers' subscribers too, once the will's rows are committed.
            let copies = broker.peers.routeToDirectory(message)
            broker.commitCollected { [self] in
                broker.peers.forwardToPeers(message, servedGroups: routed.servedGroups, placed: placement, deliveries: copies)
            }
        }
    }

    /// The connection's will row (a cluster's, for a session that is not stored) goes with it,
    /// whatever becomes of the will: this node publishes it, or it is not due.
    func forgetWillRow(of connection: Connection) {
        guard let token = connection.willToken else { return }
        connection.willToken = nil
        broker.writes.append(.deleteConnectionWill(token: token))
    }
}

// MARK: Timers (`Broker.tick`)

extension SessionLifecycle {
    /// Connections without a CONNECT in time, and clients silent past 1.5 × their keep alive
    /// [MQTT-3.1.2-22].
    func checkTimeouts(now: NIODeadline) {
        for connection in broker.connections {
            switch connection.state {
            case .awaitingConnect, .authenticating:
                if now - connection.openedAt >= .nanoseconds(Int64(broker.configuration.connectTimeout * 1e9)) {
                    broker.logger.info(
                        "no CONNECT within \(broker.configuration.connectTimeout)s",
                        metadata: ["remote": "\(connection.transport.remoteAddress)"])
                    connection.state = .closed
                    broker.close(connection)
                }
            case .connected:
                // One and a half times the keep alive without a packet [MQTT-3.1.2-22].
                if connection.keepAlive > 0 && now - connection.lastReceived >= .milliseconds(Int64(connection.keepAlive) * 1500) {
                    broker.fail(
                        connection, .keepAliveTimeout, "no packet within 1.5 × keep alive (\(connection.keepAlive)s)", spec: "MQTT-3.1.2-22"
                    )
                }
            case .connecting, .closed:
                break
            }
        }
    }

    /// Delayed wills now due, and sessions now expired.
    func runSessionTimers(now: NIODeadline) {
        for session in Array(broker.sessions.values) where session.connection == nil {
            if let due = session.willDueAt, due <= now, let will = session.will {
                session.will = nil
                session.willDueAt = nil
                publishWill(will, of: session.clientID, now: now)
                if broker.sessions[session.clientID] === session {
                    broker.writes.append(contentsOf: broker.rows.sessionRowOperations(session))
                }
            }
            if let expiresAt = session.expiresAt, expiresAt <= now {
                broker.logger.debug("session expired", metadata: ["mqtt.client_id": "\(session.clientID)"])
                endSession(session, now: now)
            }
        }
    }
}

// MARK: Refusals and shutdown

extension SessionLifecycle {
    /// The decoder refused what arrived before a CONNECT was accepted: a CONNACK with the
    /// version's reason or return code, or a close without one where the version has none.
    func connectUndecodable(_ error: MQTTCodecError, on connection: Connection) {
        if let version = error.protocolVersion, version == .v5 {
            connection.version = version
            broker.refuse(connection, reason: error.reasonCode, message: error.message)
        } else if let version = error.protocolVersion, let code = error.connectReturnCode {
            // 3.1 / 3.1.1 have a return code for a rejected identifier only.
            connection.version = version
            broker.refuse(connection, reason: code.reasonCode, message: error.message)
        } else if error.protocolVersion != nil {
            // 3.1 / 3.1.1: a CONNECT that does not conform to section 3.1 is answered by
            // closing the network connection, without a CONNACK [MQTT-3.1.4-1]; a return
            // code 0x03 would make the device retry the same bytes forever.
            broker.stats.connectionsRefused += 1
            broker.logger.info(
                "closing connection without CONNACK: \(error)", metadata: ["remote": "\(connection.transport.remoteAddress)"])
            broker.close(connection)
        } else if let code = error.connectReturnCode {
            // Unknown or mismatched protocol level: a 3.1.1-shaped CONNACK, which every
            // version can read [MQTT-3.1.2-2].
            connection.version = .v3_1_1
            broker.refuse(connection, reason: code.reasonCode, message: error.message)
        } else {
            broker.logger.info("closing connection: \(error)", metadata: ["remote": "\(connection.transport.remoteAddress)"])
            broker.close(connection)
        }
    }

    /// Disconnects a client for a shutdown or a drain step (5.0: DISCONNECT with `reason`).
    func disconnectForShutdown(_ connection: Connection, reason: MQTTReasonCode, serverReference: String?) {
        if connection.state == .connected && connection.version == .v5 {
            var properties: MQTTProperties = []
            if let serverReference { properties.append(.serverReference(serverReference)) }  // [MQTT-4.11]
            broker.send(.disconnect(MQTTDisconnect(reasonCode: reason, properties: properties)), on: connection)
        }
        if connection.state != .closed {
            // The server closes the connection without the client's DISCONNECT: its will is
            // due [MQTT-3.1.2-8] — after its Will Delay Interval, kept in the stored session
            // (a client that reconnects elsewhere first cancels it [MQTT-3.1.3-9]), or at once.
            detach(connection)
            broker.close(connection)  // flushes the DISCONNECT first: a close drops unflushed writes
        }
    }
}

// MARK: Wills taken from the store in a cluster

extension SessionLifecycle {
    /// Publishes wills taken from the store once in the cluster: those of sessions and
    /// connections whose node died (`DeadNodeSweeper`), or of connections this node let go when
    /// it was cut off and no survivor took.
    func publishWillsTaken(_ wills: [(clientID: String, will: MQTTWill)]) {
        let now = broker.clock.now()
        for (clientID, will) in wills { publishWill(will, of: clientID, now: now) }
        broker.commitCollected()
        broker.flush()
    }
}
