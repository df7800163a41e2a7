import Dispatch
import Pseudonymisation
import TrafficAnalysis

/// Turns a traffic analyser's intervals into samples and report windows on a thread of its own, in the
/// order they were handed over, while the caller analyses the next packets: `analyze FILE` uses it, where
/// pseudonyms, sketches and label sets were a third of the analysing thread's time on a capture of many
/// hosts. At most `depth` intervals wait; past that ``fold(_:at:)`` waits for room (nothing is dropped:
/// a file is analysed whole).
public final class IntervalFolder: @unchecked Sendable {
    private let queue = DispatchQueue(label: "meetpunt.interval-folder")
    private let room: DispatchSemaphore
    private let pseudonymiser: Pseudonymiser
    private let epochSeconds: Int64
    private let maxClients: Int
    // Touched on `queue` only (`finish` reads them there too).
    private var windows: WindowedAggregation
    private var closed: [WindowedAggregation.Window] = []
    private var intervals = 0

    /// Distinct series a window holds (the most `sampling.max_series_per_window` allows): the samples of
    /// any further series are dropped and counted in the window's `droppedSeries`.
    public static let maxSeriesPerWindow = 4900

    /// Windows of `windowMicroseconds`; client pseudonyms in key epochs of `epochSeconds`, the busiest
    /// `maxClients` by name and the rest in `others`, as the live agent reports them.
    public init(windowMicroseconds: Int64, pseudonymiser: Pseudonymiser, epochSeconds: Int64, maxClients: Int, depth: Int = 4) {
        precondition(depth > 0 && epochSeconds > 0)
        windows = WindowedAggregation(windowMicroseconds: windowMicroseconds, maxSeries: Self.maxSeriesPerWindow)
        self.pseudonymiser = pseudonymiser
        self.epochSeconds = epochSeconds
        self.maxClients = maxClients
        room = DispatchSemaphore(value: depth)
    }

    /// Runs `work` on the folder's thread, in turn with the intervals (`analyze` makes its flow table
    /// resident this way).
    public func perform(_ work: @escaping @Sendable () -> Void) {
        room.wait()
        queue.async {
            work()
            self.room.signal()
        }
    }

    /// Folds one interval that ended at `t` (microseconds, the capture's own time).
    public func fold(_ interval: TrafficInterval, at t: Int64) {
        perform {
            self.intervals += 1
            var batch = SampleBatch()
            TrafficSamples.add(interval, pseudonymiser: self.pseudonymiser,
                               epoch: KeyEpoch.containing(unixSeconds: t / 1_000_000, lengthSeconds: self.epochSeconds),
                               maxClients: self.maxClients, captureDrops: nil, into: &batch)
            self.closed += self.windows.add(batch, at: t)
        }
    }

    /// Waits for every interval handed over, then closes the last window: every window, in order, and
    /// the number of intervals folded.
    public func finish() -> (windows: [WindowedAggregation.Window], intervals: Int) {
        queue.sync {
            closed += windows.finish()
            return (closed, intervals)
        }
    }
}
