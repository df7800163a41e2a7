/// The unit of shipping: one device's aggregates over one report window.
///
/// Encoded as JSON (snake_case keys, integer milliseconds, no dates as strings) and gzip-compressed on the
/// wire; `docs/protocol.md` is the normative description. Every change to the shape bumps
/// ``Report/currentSchemaVersion`` and adds a golden file: old payloads decode forever.
public struct Report: Codable, Sendable, Equatable {
    /// The schema version this build writes. The collector accepts ``supportedSchemaVersions``.
    /// 1: the first. 2: sketches may hold negative values (`neg_index`/`neg_count`, for dBm).
    /// 3: `troubleshooting_session`. Agents write 3 only on a report that carries it, so collectors that
    /// accept 1...2 keep taking their other reports.
    public static let currentSchemaVersion = 3
    public static let supportedSchemaVersions: ClosedRange<Int> = 1...3

    public var schema: Int
    /// The pseudonymous device id from the agent's configuration (never a serial number or MAC).
    public var device: String
    /// Per-device sequence number, strictly increasing across restarts. (device, seq) identifies a report.
    public var seq: UInt64
    /// Window start, inclusive, milliseconds since the Unix epoch (UTC).
    public var windowStartMs: Int64
    /// Window end, exclusive, milliseconds since the Unix epoch (UTC).
    public var windowEndMs: Int64
    /// The pseudonymisation key epoch every pseudonym in this report was made with.
    public var keyEpoch: UInt32
    /// The agent's software version, for fleet views.
    public var agentVersion: String
    public var series: [Series]
    /// The troubleshooting session this window was sampled for (its profile: short interval and window);
    /// the collector stores such a report in the `troubleshooting` data class. Schema 3.
    public var troubleshootingSession: Int64?

    public init(device: String, seq: UInt64, windowStartMs: Int64, windowEndMs: Int64, keyEpoch: UInt32,
                agentVersion: String, series: [Series], troubleshootingSession: Int64? = nil,
                schema: Int? = nil) {
        self.schema = schema ?? (troubleshootingSession == nil ? 2 : 3)
        self.troubleshootingSession = troubleshootingSession
        self.device = device
        self.seq = seq
        self.windowStartMs = windowStartMs
        self.windowEndMs = windowEndMs
        self.keyEpoch = keyEpoch
        self.agentVersion = agentVersion
        self.series = series
    }

    enum CodingKeys: String, CodingKey {
        case schema, device, seq, series
        case windowStartMs = "window_start_ms"
        case windowEndMs = "window_end_ms"
        case keyEpoch = "key_epoch"
        case agentVersion = "agent_version"
        case troubleshootingSession = "troubleshooting_session"
    }
}

/// One metric with one label set, summarised over the report window.
public struct Series: Codable, Sendable, Equatable {
    public var metric: String
    public var unit: String
    public var labels: [String: String]
    /// Number of samples folded into this series (0 is never shipped).
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    public var last: Double
    /// Sum of the samples: for counter deltas, the total over the window.
    public var sum: Double
    /// Quantile sketch of the samples, present for rate metrics.
    public var sketch: QuantileSketch?

    public init(metric: String, unit: String, labels: [String: String], count: Int, min: Double, max: Double,
                mean: Double, last: Double, sum: Double, sketch: QuantileSketch?) {
        self.metric = metric
        self.unit = unit
        self.labels = labels
        self.count = count
        self.min = min
        self.max = max
        self.mean = mean
        self.last = last
        self.sum = sum
        self.sketch = sketch
    }

    /// All numeric fields, for finiteness checks.
    public var numbers: [Double] { [min, max, mean, last, sum] }
}

/// The acknowledgement the collector sends for a stored (or already stored) report.
public struct ReportAcknowledgement: Codable, Sendable, Equatable {
    public var device: String
    public var seq: UInt64
    /// True when the report had been stored before: acknowledged, not stored twice.
    public var duplicate: Bool
    /// Series stored from this report.
    public var storedSeries: Int

    public init(device: String, seq: UInt64, duplicate: Bool, storedSeries: Int) {
        self.device = device
        self.seq = seq
        self.duplicate = duplicate
        self.storedSeries = storedSeries
    }

    enum CodingKeys: String, CodingKey {
        case device, seq, duplicate
        case storedSeries = "stored_series"
    }
}

/// The collector's answer to a batch (`POST /v1/report-batches`): one result per report it read, in the
/// batch's order. The agent removes a report from its spool only on a result for its `seq`.
public struct BatchAcknowledgement: Codable, Sendable, Equatable {
    public var device: String
    public var results: [Result]
    /// The configuration version the collector wants this device to run (check-in); nil when it has none.
    public var configVersion: UInt64?

    public struct Result: Codable, Sendable, Equatable {
        public var seq: UInt64
        public var status: Status
        /// Series stored from this report (0 unless `stored`).
        public var storedSeries: Int
        /// Why the report was rejected; present only for `rejected`.
        public var error: Rejection?

        public init(seq: UInt64, status: Status, storedSeries: Int = 0, error: Rejection? = nil) {
            self.seq = seq
            self.status = status
            self.storedSeries = storedSeries
            self.error = error
        }

        enum CodingKeys: String, CodingKey {
            case seq, status, error
            case storedSeries = "stored_series"
        }
    }

    /// What became of one report. `stored` and `duplicate` are delivered; `rejected` will never be
    /// accepted as sent (the agent drops it and logs why); `retry` was not processed this time.
    public struct Status: RawRepresentable, Codable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let stored = Status(rawValue: "stored")
        public static let duplicate = Status(rawValue: "duplicate")
        public static let rejected = Status(rawValue: "rejected")
        public static let retry = Status(rawValue: "retry")
    }

    public struct Rejection: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        public var path: String?
        public init(code: String, message: String, path: String? = nil) {
            self.code = code
            self.message = message
            self.path = path
        }
    }

    public init(device: String, results: [Result], configVersion: UInt64? = nil) {
        self.device = device
        self.results = results
        self.configVersion = configVersion
    }

    enum CodingKeys: String, CodingKey {
        case device, results
        case configVersion = "config_version"
    }
}
