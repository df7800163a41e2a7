import CoreMetrics
import Foundation
import Logging
import OTel
import ServiceLifecycle
import TelemetryModel

/// The fleet aggregates over OTLP/HTTP (protobuf) to an OpenTelemetry endpoint, so an ISP's existing
/// pipeline takes them: every `interval`, the last complete 5-minute bucket's percentiles per metric and
/// cohort, as gauges. swift-otel does the protocol (a metrics backend of its own, not the process-wide
/// MetricsSystem); this type decides what is exported.
///
/// Names: OpenTelemetry has no semantic conventions for fleet Wi-Fi or link percentiles, so they live
/// under `meetpunt.fleet.<catalogue name>` (dot-separated namespaces, as the naming rules ask), with the
/// cohort's labels as attributes and `quantile`; the resource carries the semantic-convention
/// `service.name`, `service.version` and `service.instance.id`. Only cohorts at least
/// `fleet.min_reports` reports contributed to are exported, as for `/metrics` and `/v1/fleet`.
public struct FleetOTLPExport: Sendable {
    public struct Settings: Sendable, Equatable {
        /// The OTLP/HTTP metrics URL, used as is (`http://host:4318/v1/metrics`).
        public var endpoint: String
        public var intervalSeconds: Int
        public init(endpoint: String, intervalSeconds: Int = 60) {
            self.endpoint = endpoint
            self.intervalSeconds = intervalSeconds
        }
    }

    public static let quantiles = [0.5, 0.9, 0.99]

    /// The OTLP metric name of a catalogue metric.
    public static func name(_ metric: String) -> String { "meetpunt.fleet." + metric }

    /// swift-otel applies `OTEL_*` environment variables over the configuration; those that would break
    /// the export (a gRPC protocol this build lacks, an SDK switched off) are refused at start with one
    /// line, rather than a crash or silence.
    public static func environmentProblem(_ env: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        for key in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] where (env[key] ?? "").hasPrefix("grpc") {
            return "\(key)=\(env[key]!) is set, but this collector exports OTLP/HTTP only (otlp.endpoint in collector.yaml): unset it"
        }
        for key in ["OTEL_SDK_DISABLED", "OTEL_METRICS_EXPORTER"] where env[key] != nil {
            return "\(key) is set; the collector's OTLP export is configured in collector.yaml (otlp:), not by \(key): unset it"
        }
        return nil
    }

    /// The backend's factory (what the gauges are made with) and the service that exports them.
    public static func makeBackend(_ settings: Settings, serviceVersion: String, logger: Logger) throws -> (factory: any MetricsFactory, service: any Service) {
        if let problem = environmentProblem() { throw CollectorError(.configuration, problem) }
        var c = OTel.Configuration.default
        c.serviceName = "meetpunt-collector"
        c.resourceAttributes = ["service.version": serviceVersion, "service.instance.id": ProcessIdentity.instanceID]
        c.traces.enabled = false
        c.logs.enabled = false
        c.metrics.enabled = true
        c.metrics.exportInterval = .seconds(settings.intervalSeconds)
        c.metrics.otlpExporter.protocol = .httpProtobuf
        c.metrics.otlpExporter.endpoint = settings.endpoint
        c.diagnosticLogger = .custom(logger)
        c.diagnosticLogLevel = .warning
        let backend = try OTel.makeMetricsBackend(configuration: c)
        return (backend.factory, backend.service)
    }

    /// Sets the gauges from the aggregates of the last complete 5-minute bucket before `nowMs`.
    public static func update(factory: any MetricsFactory, api: CollectorAPI, nowMs: Int64) async throws {
        let bucketMs: Int64 = 300_000
        let last = nowMs / bucketMs * bucketMs - bucketMs
        for metric in api.metrics.fleetMetrics {
            let cells = try await api.store.fleet(metric: metric, bucketSeconds: 300, fromMs: last, toMs: last + 1,
                                                  cutoffMs: api.policy.cutoffMs(.fleet, nowMs: nowMs))
            for cell in cells where cell.reports >= api.configuration.fleetMinReports {
                let attributes: [(String, String)] = cell.key.cohort.split(separator: ",").compactMap { pair in
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    return kv.count == 2 ? ("meetpunt.\(kv[0])", String(kv[1])) : nil
                }
                Gauge(label: name(metric) + ".reports", dimensions: attributes, factory: factory).record(Double(cell.reports))
                for q in quantiles {
                    guard let v = cell.sketch?.quantile(q) else { continue }
                    Gauge(label: name(metric), dimensions: attributes + [("quantile", String(q))], factory: factory).record(v)
                }
            }
        }
    }
}

/// Runs the exporter: swift-otel's export loop, and the refresh of the gauges before each export.
public struct FleetOTLPService: Service {
    let api: CollectorAPI
    let settings: FleetOTLPExport.Settings
    let serviceVersion: String

    public init(api: CollectorAPI, settings: FleetOTLPExport.Settings, serviceVersion: String) {
        self.api = api
        self.settings = settings
        self.serviceVersion = serviceVersion
    }

    public func run() async throws {
        let (factory, exporter) = try FleetOTLPExport.makeBackend(settings, serviceVersion: serviceVersion, logger: api.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await exporter.run() }
            group.addTask {
                // Refreshed a little more often than exported, so each export carries the latest bucket.
                let pause = Duration.seconds(max(1, settings.intervalSeconds / 2))
                var failures = 0
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    do {
                        try await FleetOTLPExport.update(factory: factory, api: api, nowMs: api.clock())
                        failures = 0
                    } catch {
                        failures += 1
                        if failures == 1 || failures % 60 == 0 {
                            api.logger.error("fleet aggregates not read for OTLP export, will retry", metadata: ["error": "\(error)", "failures": "\(failures)"])
                        }
                    }
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}

/// A random id for this collector process (OTel's `service.instance.id`).
enum ProcessIdentity {
    static let instanceID: String = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
}
