import Pseudonymisation
import Synchronization

/// A batch of samples and the instant it describes. The epoch is the pseudonymisation key epoch its
/// pseudonyms were made with.
public struct TimedBatch: Sendable {
    public var time: SampleTime
    public var epoch: KeyEpoch
    public var batch: SampleBatch

    public init(time: SampleTime, epoch: KeyEpoch, batch: SampleBatch) {
        self.time = time
        self.epoch = epoch
        self.batch = batch
    }
}

/// The one bounded aggregation path every sense pushes into: the polled netlink and /proc samplers
/// through a small adapter, the capture threads directly. Pushing never blocks (a capture thread must
/// not wait on the aggregator); when the path is full the batch is dropped and counted, and the count
/// ships as `agent.dropped_batches`.
public final class SamplePath: Sendable {
    public let batches: AsyncStream<TimedBatch>
    private let continuation: AsyncStream<TimedBatch>.Continuation
    private let dropped = Atomic<Int>(0)

    public init(capacity: Int) {
        precondition(capacity > 0)
        (batches, continuation) = AsyncStream.makeStream(of: TimedBatch.self, bufferingPolicy: .bufferingOldest(capacity))
    }

    /// From any thread. A full (or finished) path drops the batch and counts it.
    public func push(_ batch: TimedBatch) {
        switch continuation.yield(batch) {
        case .enqueued: break
        case .dropped, .terminated: dropped.add(1, ordering: .relaxed)
        @unknown default: dropped.add(1, ordering: .relaxed)
        }
    }

    /// Batches dropped since the last call.
    public func takeDropped() -> Int { dropped.exchange(0, ordering: .relaxed) }

    /// No more batches: the consumer drains what is buffered and ends.
    public func finish() { continuation.finish() }
}

/// A sense that pushes on its own schedule (a capture thread) instead of being polled.
public protocol PushingSense: AnyObject, Sendable {
    var name: String { get }
    /// Starts pushing one batch per `interval` into `path`, pseudonymising with the epoch `epochs` gives
    /// each batch's time.
    func start(pushingInto path: SamplePath, interval: Duration, epochs: EpochRule)
    /// Stops pushing after one last batch; returns when its threads have ended.
    func stop()
}
