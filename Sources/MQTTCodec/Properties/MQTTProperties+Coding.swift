public import NIOCore

extension MQTTProperties {
    /// Reads a property list: its length as a Variable Byte Integer, then the properties
    /// [MQTT-2.2.2]. Refuses properties not allowed in `context` and values not of the
    /// specified type (0x81, [MQTT-2.2.2-2]), repeats of non-repeatable properties and values
    /// the specification forbids (0x82).
    public static func read(from buffer: inout ByteBuffer, context: MQTTProperty.Context) throws(MQTTCodecError) -> MQTTProperties {
        let length = try buffer.readMQTTVariableByteInteger("property length")
        guard var slice = buffer.readSlice(length: length) else {
            throw .malformed("property length \(length) overruns the packet")
        }
        var properties = MQTTProperties()
        var seen: Set<MQTTProperty.Identifier> = []
        while slice.readableBytes > 0 {
            let rawID = try slice.readMQTTVariableByteInteger("property identifier")
            guard rawID <= 0xFF, let id = MQTTProperty.Identifier(rawValue: UInt8(rawID)) else {
                throw .malformed("unknown property identifier 0x\(String(rawID, radix: 16)) in \(context)", spec: "MQTT-2.2.2-2")
            }
            let spec = id.spec
            guard spec.allowedIn.isSuperset(of: context) else {
                throw .malformed("\(spec.name) is not allowed in \(context)", spec: "MQTT-2.2.2-2")
            }
            if !seen.insert(id).inserted && !spec.repeatableIn.isSuperset(of: context) {
                throw .protocolError("\(spec.name) appears more than once in \(context)")
            }
            properties.append(try readValue(id, from: &slice))
        }
        return properties
    }

    private static func readValue(_ id: MQTTProperty.Identifier, from buffer: inout ByteBuffer) throws(MQTTCodecError) -> MQTTProperty {
        let name = id.spec.name
        func boolean() throws(MQTTCodecError) -> UInt8 {
            let value = try buffer.readMQTTByte(name)
            guard value <= 1 else { throw .protocolError("\(name) is \(value); it must be 0 or 1") }
            return value
        }
        switch id {
        case .payloadFormatIndicator: return .payloadFormatIndicator(try boolean())
        case .messageExpiryInterval: return .messageExpiryInterval(try buffer.readMQTTUInt32(name))
        case .contentType: return .contentType(try buffer.readMQTTString(name))
        case .responseTopic:
            let topic = try buffer.readMQTTString(name)
            // The Response Topic is a Topic Name: no wildcards [MQTT-3.3.2-14].
            try MQTTTopic.validateName(topic, spec: "MQTT-3.3.2-14")
            return .responseTopic(topic)
        case .correlationData: return .correlationData(try buffer.readMQTTBinary(name))
        case .subscriptionIdentifier:
            let value = try buffer.readMQTTVariableByteInteger(name)
            guard value > 0 else { throw .protocolError("Subscription Identifier is 0", spec: "MQTT-3.8.2.1.2") }
            return .subscriptionIdentifier(value)
        case .sessionExpiryInterval: return .sessionExpiryInterval(try buffer.readMQTTUInt32(name))
        case .assignedClientIdentifier: return .assignedClientIdentifier(try buffer.readMQTTString(name))
        case .serverKeepAlive: return .serverKeepAlive(try buffer.readMQTTUInt16(name))
        case .authenticationMethod: return .authenticationMethod(try buffer.readMQTTString(name))
        case .authenticationData: return .authenticationData(try buffer.readMQTTBinary(name))
        case .requestProblemInformation: return .requestProblemInformation(try boolean())
        case .willDelayInterval: return .willDelayInterval(try buffer.readMQTTUInt32(name))
        case .requestResponseInformation: return .requestResponseInformation(try boolean())
        case .responseInformation: return .responseInformation(try buffer.readMQTTString(name))
        case .serverReference: return .serverReference(try buffer.readMQTTString(name))
        case .reasonString: return .reasonString(try buffer.readMQTTString(name))
        case .receiveMaximum:
            let value = try buffer.readMQTTUInt16(name)
            guard value > 0 else { throw .protocolError("Receive Maximum is 0", spec: "MQTT-3.1.2.11.3") }
            return .receiveMaximum(value)
        case .topicAliasMaximum: return .topicAliasMaximum(try buffer.readMQTTUInt16(name))
        case .topicAlias:
            let value = try buffer.readMQTTUInt16(name)
            guard value > 0 else { throw MQTTCodecError(.topicAliasInvalid, "Topic Alias is 0", spec: "MQTT-3.3.2-8") }
            return .topicAlias(value)
        case .maximumQoS: return .maximumQoS(try boolean())
        case .retainAvailable: return .retainAvailable(try boolean())
        case .userProperty:
            let key = try buffer.readMQTTString("User Property name")
            let value = try buffer.readMQTTString("User Property value")
            return .userProperty(key, value)
        case .maximumPacketSize:
            let value = try buffer.readMQTTUInt32(name)
            guard value > 0 else { throw .protocolError("Maximum Packet Size is 0", spec: "MQTT-3.1.2.11.4") }
            return .maximumPacketSize(value)
        case .wildcardSubscriptionAvailable: return .wildcardSubscriptionAvailable(try boolean())
        case .subscriptionIdentifierAvailable: return .subscriptionIdentifierAvailable(try boolean())
        case .sharedSubscriptionAvailable: return .sharedSubscriptionAvailable(try boolean())
        }
    }

    /// The size of the property values, without the length prefix.
    public var contentSize: Int {
        var size = 0
        for property in storage {
            size += 1
            switch property {
            case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation,
                .maximumQoS, .retainAvailable, .wildcardSubscriptionAvailable,
                .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable:
                size += 1
            case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias:
                size += 2
            case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize:
                size += 4
            case .subscriptionIdentifier(let v):
                size += MQTTSize.variableByteInteger(v)
            case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s),
                .authenticationMethod(let s), .responseInformation(let s), .serverReference(let s),
                .reasonString(let s):
                size += MQTTSize.string(s)
            case .correlationData(let b), .authenticationData(let b):
                size += MQTTSize.binary(b)
            case .userProperty(let k, let v):
                size += MQTTSize.string(k) + MQTTSize.string(v)
            }
        }
        return size
    }

    /// The size on the wire, length prefix included.
    public var encodedSize: Int {
        let content = contentSize
        return MQTTSize.variableByteInteger(content) + content
    }

    /// Writes the length prefix and the properties.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMQTTVariableByteInteger(contentSize)
        for property in storage {
            buffer.writeInteger(property.identifier.rawValue)
            switch property {
            case .payloadFormatIndicator(let v), .requestProblemInformation(let v),
                .requestResponseInformation(let v), .maximumQoS(let v), .retainAvailable(let v),
                .wildcardSubscriptionAvailable(let v), .subscriptionIdentifierAvailable(let v),
                .sharedSubscriptionAvailable(let v):
                buffer.writeInteger(v)
            case .serverKeepAlive(let v), .receiveMaximum(let v), .topicAliasMaximum(let v), .topicAlias(let v):
                buffer.writeInteger(v, endianness: .big)
            case .messageExpiryInterval(let v), .sessionExpiryInterval(let v), .willDelayInterval(let v),
                .maximumPacketSize(let v):
                buffer.writeInteger(v, endianness: .big)
            case .subscriptionIdentifier(let v):
                buffer.writeMQTTVariableByteInteger(v)
            case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s),
                .authenticationMethod(let s), .responseInformation(let s), .serverReference(let s),
                .reasonString(let s):
                buffer.writeMQTTString(s)
            case .correlationData(let b), .authenticationData(let b):
                buffer.writeMQTTBinary(b)
            case .userProperty(let k, let v):
                buffer.writeMQTTString(k)
                buffer.writeMQTTString(v)
            }
        }
    }
}
