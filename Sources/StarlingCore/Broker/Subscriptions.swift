import MQTTCodec
import NIOCore

/// SUBSCRIBE and UNSUBSCRIBE: the checks of each filter, the session's subscriptions and the
/// index, the routes the peers learn, and the retained messages a new subscription gets. One of
/// the broker's parts (`Broker.subscriptions`), confined to its event loop like the broker.
final class Subscriptions {
    /// The broker this part belongs to, held strongly (not `unowned`, which costs a retain per
    /// use on the hot path: docs/architecture.md, "The broker core").
    let broker: Broker

    init(broker: Broker) { self.broker = broker }

    func handleSubscribe(_ subscribe: MQTTSubscribe, on connection: Connection) {
        guard let session = connection.session else { return }
        let v5 = connection.version == .v5
        let now = broker.clock.now()
        var codes: [MQTTReasonCode] = []
        var retainedToSend: [(Message, Subscription)] = []
        for request in subscribe.subscriptions {
            let filter = request.filter
            let isNew = session.subscriptions[filter.raw] == nil
            if isNew && session.subscriptions.count >= broker.configuration.maxSubscriptionsPerClient {
                codes.append(v5 ? .quotaExceeded : .failure)
                continue
            }
            if broker.configuration.topicProblem(filter.raw) != nil {
                codes.append(v5 ? .topicFilterInvalid : .failure)
                continue
            }
            guard
                broker.authorizer.isAllowed(.subscribe, topic: filter.filter, clientID: connection.clientID, username: connection.username)
            else {
                // 0x80 in every version, as the conformance suites expect.
                codes.append(.failure)
                continue
            }
            var subscription = Subscription(request, identifier: subscribe.subscriptionIdentifier)
            subscription.qos = min(request.qos, broker.configuration.maximumQoS)
            // Replaces an existing subscription with the same filter [MQTT-3.8.4-3].
            session.subscriptions[filter.raw] = subscription
            broker.index.insert(filter, subscriber: session.clientID, value: subscription)
            if isNew { broker.peers.routeAdded(filter) }
            if session.isStored {
                broker.writes.append(.saveSubscription(StoredSubscription(clientID: session.clientID, subscription: subscription)))
                broker.peers.markDirectoryChange(session)
            }
            codes.append(MQTTReasonCode(subscription.qos.rawValue))  // [MQTT-3.9.3-1] in order

            // Retained messages, per Retain Handling; never for shared subscriptions [MQTT-3.8.4-?, 4.8.2].
            let sendRetained =
                switch subscription.retainHandling {
                case .sendOnSubscribe: true
                case .sendIfNew: isNew
                case .doNotSend: false
                }
            if sendRetained && !filter.isShared {
                for message in broker.retained.matching(filter.filter, now: now)
                where broker.authorizer.isAllowed(
                    .subscribe, topic: message.topic, clientID: connection.clientID, username: connection.username)
                {
                    retainedToSend.append((message, subscription))
                }
            }
        }
        // SUBACK once the subscriptions are durable and every peer routes them; retained
        // messages follow it.
        broker.peers.announceRoutes { [self] in
            broker.commitCollected { [self] in
                subscribed(subscribe, codes: codes, retainedToSend: retainedToSend, session: session, connection: connection, now: now)
            }
        }
    }

    private func subscribed(
        _ subscribe: MQTTSubscribe, codes: [MQTTReasonCode], retainedToSend: [(Message, Subscription)],
        session: Session, connection: Connection, now: NIODeadline
    ) {
        broker.send(.suback(MQTTSubAck(packetID: subscribe.packetID, reasonCodes: codes)), on: connection)
        guard session.connection === connection else { return }
        for (message, subscription) in retainedToSend {
            // Sent with RETAIN 1 [MQTT-3.3.1-9].
            let outbound = OutboundMessage(
                message: message, qos: min(message.qos, subscription.qos), retain: true,
                subscriptionIdentifiers: subscription.identifier.map { [$0] } ?? [], shareGroup: nil)
            broker.flow.enqueue(outbound, to: session, now: now)
        }
        broker.commitCollected()
    }

    func handleUnsubscribe(_ unsubscribe: MQTTUnsubscribe, on connection: Connection) {
        guard let session = connection.session else { return }
        var codes: [MQTTReasonCode] = []
        for filter in unsubscribe.filters {
            if session.subscriptions.removeValue(forKey: filter.raw) != nil {
                broker.index.remove(filter, subscriber: session.clientID)
                broker.peers.routeRemoved(filter)
                if session.isStored {
                    broker.writes.append(.deleteSubscription(clientID: session.clientID, filter: filter.raw))
                    broker.peers.markDirectoryChange(session)
                }
                codes.append(.success)
            } else {
                codes.append(.noSubscriptionExisted)
            }
        }
        // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed; 3.x carries no codes.
        let ack = MQTTUnsubAck(packetID: unsubscribe.packetID, reasonCodes: connection.version == .v5 ? codes : [])
        broker.peers.announceRoutes { [self] in broker.commitCollected { [self] in broker.send(.unsuback(ack), on: connection) } }
    }
}
