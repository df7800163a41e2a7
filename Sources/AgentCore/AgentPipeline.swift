import AgentConfig
import Aggregation
import FoundationEssentials
import GzipCodec
import Logging
import Pseudonymisation
import ServiceLifecycle
import TelemetryModel

/// The samplers of one agent. Used from one thread at a time: the pipeline awaits each round (run on a
/// dedicated thread by ``BlockingCall``) before starting the next, which is what makes the unchecked
/// Sendable conformance true.
public final class SamplerSet: @unchecked Sendable {
    let samplers: [any Sampler]
    public init(_ samplers: [any Sampler]) { self.samplers = samplers }

    public var names: [String] { samplers.map(\.name) }

    /// One round over every sampler; a failing sampler does not stop the others.
    public func sampleAll(_ context: SampleContext) -> (batch: SampleBatch, failures: [(sampler: String, error: String)]) {
        var batch = SampleBatch()
        var failures: [(String, String)] = []
        for s in samplers {
            do { try s.sample(context, into: &batch) } catch { failures.append((s.name, "\(error)")) }
        }
        return (batch, failures)
    }
}

/// Turns a window's aggregates into a report: applies the outgoing-data guard, adds the agent's own
/// health series, encodes JSON and gzips it. Pure apart from the logger.
public struct ReportAssembler: Sendable {
    public let deviceID: String
    public let agentVersion: String
    public let outgoingGuard: OutgoingGuard

    public init(deviceID: String, agentVersion: String, outgoingGuard: OutgoingGuard) {
        self.deviceID = deviceID
        self.agentVersion = agentVersion
        self.outgoingGuard = outgoingGuard
    }

    public func assemble(seq: UInt64, windowStartMs: Int64, windowEndMs: Int64, epoch: KeyEpoch, series: [Series],
                         droppedSeries: Int, droppedReports: Int, logger: Logger) -> Report {
        let (kept, guardDropped) = outgoingGuard.filter(series, logger: logger)
        var all = kept
        for (name, value) in [("agent.guard_dropped_series", guardDropped), ("agent.dropped_series", droppedSeries),
                              ("agent.dropped_reports", droppedReports)] {
            let d = MetricCatalog.descriptor(named: name)!
            let v = Double(value)
            all.append(Series(metric: name, unit: d.unit, labels: [:], count: 1, min: v, max: v, mean: v, last: v, sum: v, sketch: nil))
        }
        return Report(device: deviceID, seq: seq, windowStartMs: windowStartMs, windowEndMs: windowEndMs,
                      keyEpoch: epoch.id, agentVersion: agentVersion, series: all)
    }

    public static func encode(_ report: Report) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(report))
    }
}

/// Samples on a fixed interval, folds samples into report windows, and queues each finished window.
/// On graceful shutdown it takes a last sample, queues the partial window, and returns.
public struct AgentPipeline: Service, CustomStringConvertible {
    let configuration: AgentConfiguration
    let samplers: SamplerSet
    let queue: any ReportQueue
    let state: AgentState
    let assembler: ReportAssembler
    let logger: Logger

    public init(configuration: AgentConfiguration, samplers: SamplerSet, queue: any ReportQueue, state: AgentState,
                assembler: ReportAssembler, logger: Logger) {
        self.configuration = configuration
        self.samplers = samplers
        self.queue = queue
        self.state = state
        self.assembler = assembler
        self.logger = logger
    }

    /// What service-lifecycle logs for this service: the sampler names, nothing from the configuration.
    public var description: String { "AgentPipeline(samplers: \(samplers.names.joined(separator: ",")))" }

    var epochLengthSeconds: Int64 { Int64(configuration.privacy.keyEpochDays) * 86_400 }

    public func run() async throws {
        let interval = Duration.seconds(configuration.sampleIntervalSeconds)
        let samplesPerWindow = configuration.reportWindowSeconds / configuration.sampleIntervalSeconds
        var aggregator = WindowAggregator(maxSeries: configuration.maxSeriesPerWindow)
        var seq = try state.lastSequence()
        var start = SampleTime.now()
        var epoch = KeyEpoch.containing(unixSeconds: start.wallMilliseconds / 1000, lengthSeconds: epochLengthSeconds)
        var samplesInWindow = 0
        var next = ContinuousClock.now
        logger.info("sampling", metadata: [
            "samplers": "\(samplers.names.joined(separator: ","))", "interval.seconds": "\(configuration.sampleIntervalSeconds)",
            "window.seconds": "\(configuration.reportWindowSeconds)", "report.next_seq": "\(seq + 1)",
        ])

        while true {
            let shuttingDown = Task.isShuttingDownGracefully || Task.isCancelled
            let time = SampleTime.now()
            let context = SampleContext(time: time, epoch: epoch)
            let samplers = self.samplers
            let (batch, failures) = await BlockingCall.run { samplers.sampleAll(context) }
            for f in failures {
                logger.warning("sampler failed", metadata: ["sampler": "\(f.sampler)", "error": "\(f.error)"])
            }
            for s in batch.samples { aggregator.add(s.descriptor, labels: s.labels, value: s.value) }
            samplesInWindow += 1

            if samplesInWindow > samplesPerWindow || shuttingDown {
                seq += 1
                await emit(seq: seq, start: start.wallMilliseconds, end: time.wallMilliseconds, epoch: epoch, aggregator: &aggregator)
                start = time
                epoch = KeyEpoch.containing(unixSeconds: time.wallMilliseconds / 1000, lengthSeconds: epochLengthSeconds)
                samplesInWindow = 1  // this sample is the next window's first baseline
            }
            if shuttingDown { return }
            next += interval
            let deadline = next
            try? await cancelWhenGracefulShutdown { try await Task.sleep(until: deadline, clock: .continuous) }
        }
    }

    private func emit(seq: UInt64, start: Int64, end: Int64, epoch: KeyEpoch, aggregator: inout WindowAggregator) async {
        let (series, droppedSeries) = aggregator.drain()
        let droppedReports = await queue.takeDroppedCount()
        let report = assembler.assemble(seq: seq, windowStartMs: start, windowEndMs: end, epoch: epoch, series: series,
                                        droppedSeries: droppedSeries, droppedReports: droppedReports, logger: logger)
        do {
            try state.storeSequence(seq)
            let body = try Gzip.compress(ReportAssembler.encode(report))
            await queue.enqueue(EncodedReport(seq: seq, windowEndMilliseconds: end, gzipBody: body))
            logger.info("report queued", metadata: ["report.seq": "\(seq)", "report.series": "\(report.series.count)",
                                                    "report.gzip_bytes": "\(body.count)"])
        } catch {
            logger.error("report could not be queued", metadata: ["report.seq": "\(seq)", "error": "\(error)"])
        }
    }
}
