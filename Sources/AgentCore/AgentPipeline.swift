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
                         droppedSeries: Int, droppedReports: Int, droppedBatches: Int = 0, logger: Logger) -> Report {
        let (kept, guardDropped) = outgoingGuard.filter(series, logger: logger)
        var all = kept
        for (name, value) in [("agent.guard_dropped_series", guardDropped), ("agent.dropped_series", droppedSeries),
                              ("agent.dropped_reports", droppedReports), ("agent.dropped_batches", droppedBatches)] {
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

/// The agent's streaming core. Every sense is a producer that pushes timestamped batches into one
/// bounded ``SamplePath``: the polled samplers (netlink, /proc) through a small adapter that samples
/// them every interval on a dedicated thread, the capture threads on their own. One consumer folds the
/// batches into report windows with ``WindowedAggregation``, driven by the batches' own timestamps (the
/// same type `analyze` drives with packet timestamps), and queues each finished window. On graceful
/// shutdown the producers take a last sample, the path drains, and the partial window is queued.
public struct AgentPipeline: Service, CustomStringConvertible {
    let configuration: AgentConfiguration
    let samplers: SamplerSet
    let pushers: [any PushingSense]
    let queue: any ReportQueue
    let state: AgentState
    let assembler: ReportAssembler
    let logger: Logger
    /// Batches the path holds before it drops: several windows' worth of every producer.
    static let pathCapacity = 256

    public init(configuration: AgentConfiguration, samplers: SamplerSet, pushers: [any PushingSense] = [], queue: any ReportQueue,
                state: AgentState, assembler: ReportAssembler, logger: Logger) {
        self.configuration = configuration
        self.samplers = samplers
        self.pushers = pushers
        self.queue = queue
        self.state = state
        self.assembler = assembler
        self.logger = logger
    }

    /// What service-lifecycle logs for this service: the sampler names, nothing from the configuration.
    public var description: String { "AgentPipeline(samplers: \((samplers.names + pushers.map(\.name)).joined(separator: ",")))" }

    var epochLengthSeconds: Int64 { Int64(configuration.privacy.keyEpochDays) * 86_400 }

    public func run() async throws {
        let interval = Duration.seconds(configuration.sampleIntervalSeconds)
        let path = SamplePath(capacity: Self.pathCapacity)
        let startSeq = try state.lastSequence()
        logger.info("sampling", metadata: [
            "samplers": "\((samplers.names + pushers.map(\.name)).joined(separator: ","))", "interval.seconds": "\(configuration.sampleIntervalSeconds)",
            "window.seconds": "\(configuration.reportWindowSeconds)", "report.next_seq": "\(startSeq + 1)",
        ])
        for p in pushers { p.start(pushingInto: path, interval: interval, epochLengthSeconds: epochLengthSeconds) }

        await withTaskGroup(of: Void.self) { group in
            // Producer: the polled samplers, every interval, on a dedicated thread each round.
            group.addTask { [samplers, logger, epochLengthSeconds, pushers] in
                var next = ContinuousClock.now
                while true {
                    let shuttingDown = Task.isShuttingDownGracefully || Task.isCancelled
                    let time = SampleTime.now()
                    let epoch = KeyEpoch.containing(unixSeconds: time.wallMilliseconds / 1000, lengthSeconds: epochLengthSeconds)
                    let context = SampleContext(time: time, epoch: epoch)
                    let (batch, failures) = await BlockingCall.run { samplers.sampleAll(context) }
                    for f in failures { logger.warning("sampler failed", metadata: ["sampler": "\(f.sampler)", "error": "\(f.error)"]) }
                    path.push(TimedBatch(time: time, epoch: epoch, batch: batch))
                    if shuttingDown { break }
                    next += interval
                    let deadline = next
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(until: deadline, clock: .continuous) }
                }
                // The pushing senses add their last interval, then the path drains and ends.
                await BlockingCall.run { for p in pushers { p.stop() } }
                path.finish()
            }
            // Consumer: windows by the batches' own time.
            group.addTask { [self] in
                var windows = WindowedAggregation(windowMicroseconds: Int64(configuration.reportWindowSeconds) * 1_000_000,
                                                  maxSeries: configuration.maxSeriesPerWindow)
                var seq = startSeq
                for await timed in path.batches {
                    for w in windows.add(timed.batch, at: timed.time.wallMilliseconds * 1000, epoch: timed.epoch.id) {
                        seq += 1
                        await emit(seq: seq, window: w, droppedBatches: path.takeDropped())
                    }
                }
                for w in windows.finish() {
                    seq += 1
                    await emit(seq: seq, window: w, droppedBatches: path.takeDropped())
                }
            }
        }
    }

    private func emit(seq: UInt64, window: WindowedAggregation.Window, droppedBatches: Int) async {
        let start = window.startMicroseconds / 1000, end = max(window.endMicroseconds / 1000, start + 1)
        let epoch = KeyEpoch(id: window.epoch ?? KeyEpoch.containing(unixSeconds: start / 1000, lengthSeconds: epochLengthSeconds).id)
        let droppedReports = await queue.takeDroppedCount()
        let report = assembler.assemble(seq: seq, windowStartMs: start, windowEndMs: end, epoch: epoch, series: window.series,
                                        droppedSeries: window.droppedSeries, droppedReports: droppedReports,
                                        droppedBatches: droppedBatches, logger: logger)
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
