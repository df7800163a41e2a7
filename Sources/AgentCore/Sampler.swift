import Pseudonymisation
import TelemetryModel

/// What a sampler emits: catalogued metric samples with labels.
public struct SampleBatch: Sendable {
    public struct Sample: Sendable {
        public let descriptor: MetricDescriptor
        public let labels: [String: String]
        public let value: Double
    }

    public private(set) var samples: [Sample] = []
    /// Many samples of one series, in order (RTTs of an interval): folded with one key lookup.
    public struct Run: Sendable {
        public let descriptor: MetricDescriptor
        public let labels: [String: String]
        public let values: [Double]
    }
    public private(set) var runs: [Run] = []
    public init() {}

    /// Adds the samples `values` of one series, in order.
    public mutating func add(_ name: String, _ labels: [String: String], values: [Double]) {
        guard !values.isEmpty else { return }
        guard let d = MetricCatalog.descriptor(named: name) else {
            preconditionFailure("metric \(name) is not in MetricCatalog")
        }
        runs.append(Run(descriptor: d, labels: labels, values: values))
    }

    /// Adds a sample of the catalogued metric `name`; an uncatalogued name is a programming error.
    public mutating func add(_ name: String, _ labels: [String: String], _ value: Double) {
        guard let d = MetricCatalog.descriptor(named: name) else {
            preconditionFailure("metric \(name) is not in MetricCatalog")
        }
        samples.append(Sample(descriptor: d, labels: labels, value: value))
    }
}

/// Context shared by every sampler in one sampling round.
public struct SampleContext: Sendable {
    public var time: SampleTime
    /// The key epoch of the window being filled: pseudonyms must use it, the report carries it.
    public var epoch: KeyEpoch
    public init(time: SampleTime, epoch: KeyEpoch) {
        self.time = time
        self.epoch = epoch
    }
}

extension SampleContext {
    /// The shortest interval a rate or a share of time is computed over. The last sample before a
    /// shutdown, or one taken at once when new settings arrive, may come milliseconds after the one
    /// before: its counter deltas count, but a rate over a few milliseconds is noise in the window's
    /// maximum and sketch (one 1,500-byte packet in 6 ms reads as 2 Mbit/s; /proc/stat moves in 10-ms
    /// ticks, so a CPU share over 6 ms is 0 or 1).
    public static let minimumRateSeconds = 0.25
}

/// A source of samples (link counters, LAN clients; Wi-Fi and packet capture later). Samplers own kernel
/// handles and are called from one thread at a time, never from the cooperative pool.
public protocol Sampler: AnyObject {
    var name: String { get }
    func sample(_ context: SampleContext, into batch: inout SampleBatch) throws
}
