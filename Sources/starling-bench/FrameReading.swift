import MQTTCodec
import NIOCore

/// A channel handler of this tool that reads whole MQTT frames (the client and the sink): one
/// read loop for both, over the codec's `MQTTPacketReader`.
protocol FrameReading: ChannelInboundHandler, AnyObject where InboundIn == ByteBuffer {
    var reader: MQTTPacketReader { get set }
    /// Handles one frame; false when reading should stop (the connection is closing).
    func handleFrame(_ frame: MQTTFrame, context: ChannelHandlerContext) throws -> Bool
    /// A frame could not be read or handled.
    func readFailed(context: ChannelHandlerContext)
}

extension FrameReading {
    func readFrames(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = Self.unwrapInboundIn(data)
        guard reader.receive(&buffer) else { return }  // a read further up the stack decodes them
        defer { reader.finish(allocator: context.channel.allocator) }
        do {
            while let frame = try reader.nextFrame() {
                guard try handleFrame(frame, context: context) else { return }
            }
        } catch {
            readFailed(context: context)
        }
    }
}
