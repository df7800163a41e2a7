#if canImport(Glibc)
import Glibc
#endif
import GzipCodec
import TelemetryModel

/// The CPU an ingested report costs in each stage of `POST /v1/reports` that does not wait on anything:
/// the gzip body inflated, read, checked (device id, ``ReportValidator``, data classes; not the retention
/// cut-off, a comparison per class), encoded into its stored rows and merged into the fleet aggregates,
/// with the calls ``CollectorAPI/ingestBatch(_:)`` makes, in one task, without HTTP or a database
/// (`meetpunt-collector loadtest --cpu-stages N`, docs/benchmarks.md).
///
/// A load run's reports per second move with everything else on the machine; these figures are the
/// process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`; nothing else runs in it), the best of several rounds
/// over the same bodies, so a change to one stage shows in that stage's line.
public enum IngestStages {
    public struct Stage: Sendable {
        public let name: String
        /// Process CPU time per report, best round.
        public let microsecondsPerReport: Double
    }

    public struct Result: Sendable {
        public let reports: Int
        public let series: Int
        public let stages: [Stage]
        public var totalMicrosecondsPerReport: Double { stages.reduce(0) { $0 + $1.microsecondsPerReport } }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Every stage over `bodies` (gzip request bodies as agents send them) `rounds` times.
    public static func measure(bodies: [[UInt8]], rounds: Int, nowMs: Int64, configuration: CollectorConfiguration) async throws -> Result {
        let validator = ReportValidator(limits: configuration.validatorLimits, identifierGuard: IdentifierGuard(ssids: configuration.guardSSIDs))
        var stages: [String: Double] = [:]
        var reportCount = 0, seriesCount = 0
        for _ in 0..<max(1, rounds) {
            var best: [(String, Double)] = []

            var t = processCPUSeconds()
            var json: [[UInt8]] = []
            json.reserveCapacity(bodies.count)
            for b in bodies { json.append(try Gzip.decompress(b, limit: configuration.maxDecompressedBytes)) }
            best.append(("inflate (gzip)", processCPUSeconds() - t))

            t = processCPUSeconds()
            var reports: [Report] = []
            for body in json {
                guard case .reports(let r) = ReportBatchReader.read(body, maxReports: configuration.maxReportsPerBatch) else {
                    throw Failure(description: "a generated body did not take the batch reader's fast path")
                }
                reports += r
            }
            best.append(("read (batch reader)", processCPUSeconds() - t))

            t = processCPUSeconds()
            var classes: [[DataClass]] = []
            classes.reserveCapacity(reports.count)
            for report in reports {
                if let v = validator.validateDeviceID(report.device) ?? validator.validate(report, nowMs: nowMs) {
                    throw Failure(description: "a generated report is invalid: \(v.path): \(v.message)")
                }
                classes.append(report.series.map { MetricCatalog.descriptor(named: $0.metric)!.dataClass })
            }
            best.append(("check (validation, classes)", processCPUSeconds() - t))

            t = processCPUSeconds()
            var bytes = 0
            for (report, c) in zip(reports, classes) {
                for row in try ReportRows.payloads(report, c) { bytes += row.payload.count }
            }
            best.append(("encode rows (codec, zstd)", processCPUSeconds() - t))

            let fleet = FleetAggregator(maxCells: .max)
            t = processCPUSeconds()
            for report in reports { await fleet.add(report) }
            best.append(("fleet aggregates", processCPUSeconds() - t))

            reportCount = reports.count
            seriesCount = reports.reduce(0) { $0 + $1.series.count }
            precondition(bytes > 0)
            for (name, seconds) in best { stages[name] = min(stages[name] ?? .infinity, seconds) }
        }
        let order = ["inflate (gzip)", "read (batch reader)", "check (validation, classes)", "encode rows (codec, zstd)", "fleet aggregates"]
        return Result(reports: reportCount, series: seriesCount, stages: order.map { name in
            Stage(name: name, microsecondsPerReport: (stages[name] ?? 0) * 1e6 / Double(max(1, reportCount)))
        })
    }

    static func processCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
