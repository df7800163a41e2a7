import Foundation
import Prometheus
import Synchronization
import TelemetryModel

/// The collector's own health in Prometheus' text format (`GET /metrics`), with bounded cardinality: no
/// per-device and no per-client series, reject reasons from the API's fixed set of error codes, fleet
/// figures only per metric and cohort (fixed-set labels), and only for cohorts enough reports
/// contributed to. docs/operations.md lists every series.
public final class CollectorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let stored: Counter
    let duplicates: Counter
    let requests: Counter
    let batchReports: ValueHistogram
    let ingestSeconds: DurationHistogram
    let purgeRuns: Counter
    let purgeFailures: Counter
    let purgeLastSuccess: Gauge

    /// Metrics whose fleet percentiles are exposed (from the last complete 5-minute bucket).
    public let fleetMetrics: [String]

    /// The same health figures as the Prometheus series, readable by the dashboard (the registry's
    /// counters can be written, not read). Since this process started.
    public struct Health: Sendable {
        public var stored = 0
        public var duplicates = 0
        public var rejected: [String: Int] = [:]
        public var purgeRuns = 0
        public var purgeFailures = 0
        public var lastPurgeMs: Int64?
        public var agentDrops: [String: Double] = [:]
    }
    private let healthState = Mutex(Health())
    public var health: Health { healthState.withLock { $0 } }
    func countStored() {
        stored.increment()
        healthState.withLock { $0.stored += 1 }
    }
    func countDuplicate() {
        duplicates.increment()
        healthState.withLock { $0.duplicates += 1 }
    }

    public init(fleetMetrics: [String] = ["wifi.station.signal_dbm", "wifi.station.snr_db", "link.rx_rate", "link.tx_rate"]) {
        self.fleetMetrics = fleetMetrics.filter { MetricCatalog.descriptor(named: $0) != nil }
        stored = registry.makeCounter(descriptor: Self.named("meetpunt_ingest_reports_total", "Reports received, by outcome (stored, duplicate, rejected)."), labels: [("outcome", "stored")])
        duplicates = registry.makeCounter(descriptor: Self.named("meetpunt_ingest_reports_total", "Reports received, by outcome (stored, duplicate, rejected)."), labels: [("outcome", "duplicate")])
        requests = registry.makeCounter(descriptor: Self.named("meetpunt_ingest_requests_total", "Ingest requests answered 2xx."))
        batchReports = registry.makeValueHistogram(descriptor: Self.named("meetpunt_ingest_batch_reports", "Reports per ingest request."), buckets: [1, 2, 5, 10, 20, 50, 100])
        ingestSeconds = registry.makeDurationHistogram(descriptor: Self.named("meetpunt_ingest_request_duration_seconds", "Time to check and store one ingest request."), buckets: [.milliseconds(5), .milliseconds(20), .milliseconds(50), .milliseconds(100),
                                                                 .milliseconds(250), .milliseconds(1000), .milliseconds(5000)])
        purgeRuns = registry.makeCounter(descriptor: Self.named("meetpunt_purge_runs_total", "Retention purges completed."))
        purgeFailures = registry.makeCounter(descriptor: Self.named("meetpunt_purge_failures_total", "Retention purges that failed."))
        purgeLastSuccess = registry.makeGauge(descriptor: Self.named("meetpunt_purge_last_success_timestamp_seconds",
                                                                     "Unix time of the last completed purge (0 before the first)."))
    }

    /// A full metric name and its help text (no namespace or unit parts: the names are written out whole).
    static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    func rejected(reason: String) {
        registry.makeCounter(descriptor: Self.named("meetpunt_ingest_reports_total", "Reports received, by outcome (stored, duplicate, rejected)."), labels: [("outcome", "rejected")]).increment()
        registry.makeCounter(descriptor: Self.named("meetpunt_ingest_rejected_reports_total", "Reports rejected, by the API's error code."), labels: [("reason", reason)]).increment()
        healthState.withLock { $0.rejected[reason, default: 0] += 1 }
    }

    /// What agents said about themselves in a stored report: their drops, summed over the fleet.
    func agentReported(_ report: Report) {
        for s in report.series where s.sum > 0 {
            let kind: String
            switch s.metric {
            case "agent.dropped_reports": kind = "dropped_reports"
            case "agent.unspooled_reports": kind = "unspooled_reports"
            case "agent.rejected_reports": kind = "rejected_reports"
            case "agent.dropped_batches": kind = "dropped_batches"
            case "agent.dropped_series": kind = "dropped_series"
            case "agent.guard_dropped_series": kind = "guard_dropped_series"
            default: continue
            }
            registry.makeCounter(descriptor: Self.named("meetpunt_agent_reported_drops_total", "Drops agents reported in their own reports, summed over every device."), labels: [("kind", kind)]).increment(by: s.sum)
            healthState.withLock { $0.agentDrops[kind, default: 0] += s.sum }
        }
    }

    func purged(ok: Bool, atMs: Int64) {
        if ok {
            purgeRuns.increment()
            purgeLastSuccess.set(to: Double(atMs) / 1000)
        } else {
            purgeFailures.increment()
        }
        healthState.withLock { h in
            if ok { h.purgeRuns += 1; h.lastPurgeMs = atMs } else { h.purgeFailures += 1 }
        }
    }

    /// Sets the fleet gauges from the aggregates of the last complete 5-minute bucket.
    func refreshFleet(store: any TelemetryStore, nowMs: Int64, cutoffMs: Int64, minReports: Int) async {
        let bucketMs: Int64 = 300_000
        let last = nowMs / bucketMs * bucketMs - bucketMs
        for metric in fleetMetrics {
            guard let cells = try? await store.fleet(metric: metric, bucketSeconds: 300, fromMs: last, toMs: last + 1, cutoffMs: cutoffMs) else { continue }
            for c in cells where c.reports >= minReports {
                let base: [(String, String)] = [("metric", metric), ("cohort", c.key.cohort)]
                registry.makeGauge(descriptor: Self.named("meetpunt_fleet_reports", "Reports merged into the last complete 5-minute fleet bucket, per metric and cohort."), labels: base).set(to: Double(c.reports))
                for q in [0.5, 0.9, 0.99] {
                    guard let v = c.sketch?.quantile(q) else { continue }
                    registry.makeGauge(descriptor: Self.named("meetpunt_fleet_quantile", "Fleet percentile from merged sketches, last complete 5-minute bucket."), labels: base + [("quantile", String(q))]).set(to: v)
                }
            }
        }
    }
}
