import BrokerProtocol
import NIOCore

/// One subscriber connection of a `routing` run: asks for all of its subscriptions at once
/// (pipelined), reports when the broker has confirmed them, then hands each delivery to the run.
/// Runs on the run's event loop.
final class RoutingSubscriber: WSClientDelegate {
    unowned let run: RoutingRun
    let index: Int
    var client: WSClient!
    /// Ours: `subscribed` replies still to come. NATS: 1 until the PONG after the SUBs.
    private var awaiting: Int
    private var nats = NATSStreamParser()

    init(run: RoutingRun, index: Int) {
        self.run = run
        self.index = index
        awaiting = run.plan.target == .ours ? run.plan.subscriptionCount(onConnection: index) : 1
    }

    func ready(_ client: WSClient) {
        let plan = run.plan
        switch plan.target {
        case .ours:
            for j in plan.subscriptions(onConnection: index) {
                client.sendText { buffer in
                    buffer.writeStaticString(#"{"op":"subscribe","id":"#)
                    buffer.writeDecimal(UInt64(j))
                    buffer.writeStaticString(#","history":0,"topic":""#)
                    plan.writeFilter(ofSubscription: j, into: &buffer)
                    buffer.writeStaticString(#""}"#)
                }
            }
        case .nats:
            client.sendBinary { NATSWire.writeConnect(into: &$0) }
            for j in plan.subscriptions(onConnection: index) {
                // sid j + 1: NATS clients number subscriptions from 1.
                client.sendBinary { buffer in
                    NATSWire.writeSubscribe(sid: j + 1, into: &buffer) { plan.writeFilter(ofSubscription: j, into: &$0) }
                }
            }
            // The server handles a connection's input in order: its PONG confirms every SUB.
            client.sendBinary { NATSWire.writePing(into: &$0) }
        }
        client.flush()
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        switch run.plan.target {
        case .ours: receivedOurs(payload, isBinary: isBinary)
        case .nats: receivedNATS(payload)
        }
    }

    private func receivedOurs(_ frame: ByteBuffer, isBinary: Bool) {
        if let delivery = isBinary ? OursDelivery.binary(frame, plan: run.plan) : OursDelivery.text(frame, plan: run.plan) {
            guard let topic = delivery.topic, let j = run.plan.subscription(topic: topic, connection: index) else {
                run.misrouted(connection: index, what: String(buffer: frame))
                return
            }
            run.delivered(subscription: j, topic: topic, stamp: delivery.stamp)
        } else if OursDelivery.hasPrefix(frame, OursDelivery.subscribedPrefix) {
            awaiting -= 1
            if awaiting == 0 { run.connectionSubscribed(index) }
        } else if OursDelivery.hasPrefix(frame, OursDelivery.errorPrefix) {
            run.fail(BenchError("subscriber connection \(index): \(String(buffer: frame))"))
        }
    }

    private func receivedNATS(_ frame: ByteBuffer) {
        let plan = run.plan
        do {
            try nats.consume(frame) { message in
                switch message {
                case .msg(let subject, let sid, let payload):
                    let j = Int(sid) - 1
                    let topic = subject.withUnsafeReadableBytes { plan.topicIndex($0) }
                    guard j >= 0, j < plan.subscriptions, plan.connection(ofSubscription: j) == index,
                        let topic, topic == plan.topic(ofSubscription: j)
                    else {
                        run.misrouted(connection: index, what: "MSG \(String(buffer: subject)) sid \(sid)")
                        return
                    }
                    run.delivered(subscription: j, topic: topic, stamp: payload.withUnsafeReadableBytes(RoutingPayload.readText))
                case .ping:
                    client.sendBinary { NATSWire.writePong(into: &$0) }
                case .pong:
                    if awaiting > 0 {
                        awaiting = 0
                        run.connectionSubscribed(index)
                    }
                case .err(let line):
                    run.fail(BenchError("subscriber connection \(index): \(line)"))
                case .info, .ok:
                    break
                }
            }
        } catch {
            run.fail(BenchError("subscriber connection \(index): \(error)"))
        }
    }

    func closed(_ client: WSClient, reason: String) {
        run.connectionLost(index, reason: reason)
    }
}

/// One publisher connection: owns topics p, p + P, ... and publishes them in turn.
final class RoutingPublisher: WSClientDelegate {
    unowned let run: RoutingRun
    let index: Int
    var client: WSClient!
    /// Succeeds when the connection can publish (ours: the welcome; NATS: the PONG after CONNECT).
    let readyPromise: EventLoopPromise<Void>
    private let ownedTopics: Int
    private var turn = 0
    private var nats = NATSStreamParser()

    init(run: RoutingRun, index: Int) {
        self.run = run
        self.index = index
        readyPromise = run.loop.makePromise()
        ownedTopics = run.plan.topicCount(ofPublisher: index)
    }

    /// The next of its topics, round-robin.
    func nextTopic() -> Int {
        let topic = index + turn * run.plan.publishers
        turn = turn + 1 == ownedTopics ? 0 : turn + 1
        return topic
    }

    /// A publish of topic `t` without an id (no reply); `stamp` nil for a warm-up message.
    func publish(topic t: Int, stamp: (sentAt: UInt64, sequence: Int)?) {
        let plan = run.plan
        let size = run.options.size
        switch plan.target {
        case .ours where run.options.binary:
            client.sendBinary { buffer in
                buffer.writeMultipleIntegers(UInt8(0x01), UInt8(0))  // publish, no retain, no ack
                let lengthAt = buffer.writerIndex
                buffer.writeInteger(UInt16(0))
                let topicAt = buffer.writerIndex
                plan.writeTopic(t, into: &buffer)
                buffer.setInteger(UInt16(buffer.writerIndex - topicAt), at: lengthAt)
                RoutingPayload.writeBinary(stamp, size: size, into: &buffer)
            }
        case .ours:
            client.sendText { buffer in
                buffer.writeStaticString(#"{"op":"publish","topic":""#)
                plan.writeTopic(t, into: &buffer)
                buffer.writeStaticString(#"","data":""#)
                RoutingPayload.writeText(stamp, size: size, into: &buffer)
                buffer.writeStaticString(#""}"#)
            }
        case .nats:
            client.sendBinary { buffer in
                NATSWire.writePublishHeader(payloadLength: size, into: &buffer) { plan.writeTopic(t, into: &$0) }
                RoutingPayload.writeText(stamp, size: size, into: &buffer)
                NATSWire.finishPublish(into: &buffer)
            }
        }
    }

    func ready(_ client: WSClient) {
        switch run.plan.target {
        case .ours:
            readyPromise.succeed(())
        case .nats:
            client.sendBinary { NATSWire.writeConnect(into: &$0) }
            client.sendBinary { NATSWire.writePing(into: &$0) }
            client.flush()
        }
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        switch run.plan.target {
        case .ours:
            if OursDelivery.hasPrefix(payload, OursDelivery.errorPrefix) { run.publishRefused(String(buffer: payload)) }
        case .nats:
            do {
                try nats.consume(payload) { message in
                    switch message {
                    case .ping: client.sendBinary { NATSWire.writePong(into: &$0) }
                    case .pong: readyPromise.succeed(())
                    case .err(let line): run.fail(BenchError("publisher \(index): \(line)"))
                    case .msg, .info, .ok: break
                    }
                }
            } catch {
                run.fail(BenchError("publisher \(index): \(error)"))
            }
        }
    }

    func closed(_ client: WSClient, reason: String) {
        readyPromise.fail(BenchError(reason))
        run.publisherLost(index, reason: reason)
    }
}
