import AgentConfig
import Aggregation
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

    /// One round over every sampler (or those in `enabled`); a failing sampler does not stop the others.
    public func sampleAll(_ context: SampleContext, enabled: Set<String>? = nil) -> (batch: SampleBatch, failures: [(sampler: String, error: String)]) {
        var batch = SampleBatch()
        var failures: [(String, String)] = []
        for s in samplers where enabled?.contains(s.name) ?? true {
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
                         droppedSeries: Int, droppedBatches: Int = 0, spool: SpoolFigures = SpoolFigures(),
                         configVersion: UInt64 = 0, rejectedConfigVersion: UInt64? = nil, troubleshootingSession: Int64? = nil,
                         logger: Logger) -> Report {
        let (kept, guardDropped) = outgoingGuard.filter(series, logger: logger)
        var all = kept
        var own: [(String, Double)] = [("agent.guard_dropped_series", Double(guardDropped)), ("agent.dropped_series", Double(droppedSeries)),
                                       ("agent.dropped_reports", Double(spool.drops.droppedReports)), ("agent.dropped_batches", Double(droppedBatches)),
                                       ("agent.unspooled_reports", Double(spool.drops.unspooledReports)),
                                       ("agent.spool.reports", Double(spool.reports)), ("agent.spool.bytes", Double(spool.bytes)),
                                       ("agent.rejected_reports", Double(spool.drops.rejectedReports)),
                                       ("agent.config.version", Double(configVersion))]
        if let rejectedConfigVersion { own.append(("agent.config.rejected_version", Double(rejectedConfigVersion))) }
        if let first = spool.drops.firstDroppedStartMs, let last = spool.drops.lastDroppedEndMs {
            own.append(("agent.dropped_span_start_ms", Double(first)))
            own.append(("agent.dropped_span_end_ms", Double(last)))
        }
        for (name, v) in own {
            let d = MetricCatalog.descriptor(named: name)!
            all.append(Series(metric: name, unit: d.unit, labels: [:], count: 1, min: v, max: v, mean: v, last: v, sum: v, sketch: nil))
        }
        return Report(device: deviceID, seq: seq, windowStartMs: windowStartMs, windowEndMs: windowEndMs,
                      keyEpoch: epoch.id, agentVersion: agentVersion, series: all, troubleshootingSession: troubleshootingSession)
    }

    /// The spool's state as the agent reports it about itself.
    public struct SpoolFigures: Sendable {
        public var drops = DiskSpool.Drops()
        public var reports = 0
        public var bytes = 0
        public init(drops: DiskSpool.Drops = DiskSpool.Drops(), reports: Int = 0, bytes: Int = 0) {
            self.drops = drops
            self.reports = reports
            self.bytes = bytes
        }
    }

    /// The report's wire form: what `JSONEncoder` with `.sortedKeys` writes, written directly (``ReportJSON``).
    public static func encode(_ report: Report) throws -> [UInt8] {
        try ReportJSON.encode(report)
    }
}

/// The agent's streaming core. Every sense is a producer that pushes timestamped batches into one
/// bounded ``SamplePath``: the polled samplers (netlink, /proc) through a small adapter that samples
/// them every interval on a dedicated thread, the capture threads on their own. One consumer folds the
/// batches into report windows with ``WindowedAggregation``, driven by the batches' monotonic time (the
/// same type `analyze` drives with packet timestamps), dates each finished window through a
/// ``WallClockAnchor`` and appends it to the ``DiskSpool``, which assigns nothing but persists the
/// sequence with the report. Windows that finish before the wall clock is plausible wait in memory
/// (bounded) and are dated once it is: the monotonic clock did not stop, so their bounds are exact. A
/// wall-clock step is reported as `agent.clock.step_seconds` in the window it fell in; windows never
/// stretch or turn negative with it. On graceful shutdown the producers take a last sample, the path
/// drains, and the partial window is spooled.
public struct AgentPipeline: Service, CustomStringConvertible {
    let configuration: AgentConfiguration
    let samplers: SamplerSet
    let pushers: [any PushingSense]
    let spool: DiskSpool
    let assembler: ReportAssembler
    let clock: AgentClock
    let settings: RuntimeSettings
    let logger: Logger
    /// Batches the path holds before it drops: several windows' worth of every producer.
    static let pathCapacity = 256

    public init(configuration: AgentConfiguration, samplers: SamplerSet, pushers: [any PushingSense] = [], spool: DiskSpool,
                assembler: ReportAssembler, clock: AgentClock = .system, settings: RuntimeSettings? = nil, logger: Logger) {
        self.configuration = configuration
        self.samplers = samplers
        self.pushers = pushers
        self.spool = spool
        self.assembler = assembler
        self.clock = clock
        self.settings = settings ?? RuntimeSettings(configuration: configuration, available: Set(samplers.names))
        self.logger = logger
    }

    /// What service-lifecycle logs for this service: the sampler names, nothing from the configuration.
    public var description: String { "AgentPipeline(samplers: \((samplers.names + pushers.map(\.name)).joined(separator: ",")))" }

    var epochs: EpochRule {
        EpochRule(lengthSeconds: Int64(configuration.privacy.keyEpochDays) * 86_400, floorMilliseconds: configuration.clock.wallClockFloorMilliseconds)
    }

    public func run() async throws {
        let interval = Duration.seconds(configuration.sampleIntervalSeconds)
        let path = SamplePath(capacity: Self.pathCapacity)
        logger.info("sampling", metadata: [
            "samplers": "\((samplers.names + pushers.map(\.name)).joined(separator: ","))", "interval.seconds": "\(configuration.sampleIntervalSeconds)",
            "window.seconds": "\(configuration.reportWindowSeconds)", "report.next_seq": "\(spool.lastSeq + 1)",
        ])
        let epochs = self.epochs
        for p in pushers { p.start(pushingInto: path, interval: interval, epochs: epochs) }

        await withTaskGroup(of: Void.self) { group in
            // Producer: the polled samplers, every interval, on a dedicated thread each round.
            group.addTask { [samplers, logger, pushers, clock, settings] in
                var next = ContinuousClock.now
                while true {
                    let shuttingDown = Task.isShuttingDownGracefully || Task.isCancelled
                    let time = clock.now()
                    let epoch = epochs.epoch(at: time)
                    let context = SampleContext(time: time, epoch: epoch)
                    let now = settings.current
                    let (batch, failures) = await BlockingCall.run { samplers.sampleAll(context, enabled: now.enabled) }
                    for f in failures { logger.warning("sampler failed", metadata: ["sampler": "\(f.sampler)", "error": "\(f.error)"]) }
                    path.push(TimedBatch(time: time, epoch: epoch, batch: batch))
                    if shuttingDown { break }
                    next += .seconds(now.intervalSeconds)
                    // Slept in steps of at most a second, so a troubleshooting session (a shorter interval)
                    // or its end takes effect at once rather than after the interval in progress.
                    while ContinuousClock.now < next, !Task.isShuttingDownGracefully, !Task.isCancelled {
                        let step = min(next, ContinuousClock.now + .seconds(1))
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(until: step, clock: .continuous) }
                        let profile = settings.current
                        if profile.session != now.session || profile.intervalSeconds != now.intervalSeconds {
                            next = ContinuousClock.now
                            break
                        }
                    }
                }
                // The pushing senses add their last interval, then the path drains and ends.
                await BlockingCall.run { for p in pushers { p.stop() } }
                path.finish()
            }
            // Consumer: windows by the batches' own monotonic time, dated once the wall clock is plausible.
            group.addTask { [self] in
                var windowSeconds = settings.current.windowSeconds
                var windowSession = settings.current.session
                var windows = WindowedAggregation(windowMicroseconds: Int64(windowSeconds) * 1_000_000, maxSeries: configuration.maxSeriesPerWindow)
                windows.session = windowSession
                var dating = WindowDating(anchor: WallClockAnchor(floorMilliseconds: configuration.clock.wallClockFloorMilliseconds),
                                          maxPending: configuration.clock.maxUnanchoredWindows)
                for await timed in path.batches {
                    let profile = settings.current
                    if profile.windowSeconds != windowSeconds || profile.session != windowSession {
                        // New remote settings, or a troubleshooting session starting or ending: the open
                        // window ends here, the next one has the new length and tag.
                        for w in windows.finish() { await spoolDated(dating.finished(w), droppedBatches: path.takeDropped()) }
                        if let ended = windowSession, profile.session == nil {
                            // Said here, where it takes effect: on time even while the collector is unreachable.
                            let byClock = settings.session.map { ContinuousClock.now >= $0.ends } ?? false
                            logger.notice(byClock ? "troubleshooting session over: its end time was reached; back to the normal profile"
                                                  : "troubleshooting session over; back to the normal profile",
                                          metadata: ["session.id": "\(ended)", "window.seconds": "\(profile.windowSeconds)"])
                        }
                        windowSeconds = profile.windowSeconds
                        windowSession = profile.session
                        windows = WindowedAggregation(windowMicroseconds: Int64(windowSeconds) * 1_000_000, maxSeries: configuration.maxSeriesPerWindow)
                        windows.session = windowSession
                    }
                    var batch = timed.batch
                    // Windows this batch closes were sampled before its reading: they are dated with the
                    // anchor as it stood; the step, if any, belongs to the window the batch opens or joins.
                    var anchor = dating.anchor
                    if let step = anchor.observe(timed.time) {
                        logger.warning("wall clock stepped; windows stay on the monotonic clock", metadata: ["clock.step_ms": "\(step)"])
                        batch.add("agent.clock.step_seconds", [:], Double(step) / 1000)
                    }
                    for w in windows.add(batch, at: Int64(timed.time.monotonicNanoseconds / 1000), epoch: timed.epoch.id) {
                        await spoolDated(dating.finished(w), droppedBatches: path.takeDropped())
                    }
                    dating.anchor = anchor
                }
                for w in windows.finish() { await spoolDated(dating.finished(w), droppedBatches: path.takeDropped()) }
                if dating.pendingCount > 0 {
                    logger.error("stopping before the wall clock was plausible; windows without dates are lost", metadata: [
                        "windows": "\(dating.pendingCount)", "clock.floor_ms": "\(configuration.clock.wallClockFloorMilliseconds)"])
                }
            }
        }
    }

    /// `dropped` counts windows lost while waiting for the clock; it is logged when it happens and carried
    /// by the first report that follows.
    private func spoolDated(_ dated: (ready: [WindowDating.Dated], dropped: Int), droppedBatches: Int) async {
        if dated.ready.isEmpty, dated.dropped > 0 {
            logger.warning("wall clock still implausible; oldest undated windows dropped", metadata: ["windows": "\(dated.dropped)"])
        }
        for (i, d) in dated.ready.enumerated() {
            await emit(d, droppedBatches: i == 0 ? droppedBatches : 0, undatedDropped: i == 0 ? dated.dropped : 0)
        }
    }

    private func emit(_ dated: WindowDating.Dated, droppedBatches: Int, undatedDropped: Int) async {
        let window = dated.window
        let epoch = KeyEpoch(id: window.epoch ?? epochs.epoch(at: SampleTime(wallMilliseconds: dated.startMs, monotonicNanoseconds: 0)).id)
        let spool = self.spool
        var drops = spool.takeDrops()
        if drops.droppedReports > 0 {
            logger.warning("spool bound reached: oldest windows dropped unsent", metadata: [
                "windows": "\(drops.droppedReports)", "span.start_ms": "\(drops.firstDroppedStartMs ?? 0)", "span.end_ms": "\(drops.lastDroppedEndMs ?? 0)"])
        }
        drops.droppedReports += undatedDropped
        let seq = spool.lastSeq + 1
        let running = settings.current
        let report = assembler.assemble(seq: seq, windowStartMs: dated.startMs, windowEndMs: dated.endMs, epoch: epoch, series: window.series,
                                        droppedSeries: window.droppedSeries, droppedBatches: droppedBatches,
                                        spool: .init(drops: drops, reports: spool.count, bytes: spool.bytesOnDisk),
                                        configVersion: running.version, rejectedConfigVersion: running.rejectedVersion,
                                        troubleshootingSession: window.session, logger: logger)
        let body: [UInt8]
        do { body = try Gzip.compress(ReportAssembler.encode(report)) } catch {
            spool.countUnspooled()
            logger.error("report could not be encoded", metadata: ["report.seq": "\(seq)", "error": "\(error)"])
            return
        }
        let now = clock.now().wallMilliseconds
        let nowMs: Int64? = now >= configuration.clock.wallClockFloorMilliseconds ? now : nil
        let result = await BlockingCall.run { () -> Result<Void, AgentError> in
            Result { () throws(AgentError) in
                try spool.append(seq: seq, windowStartMs: dated.startMs, windowEndMs: dated.endMs, gzipBody: body, nowMs: nowMs)
            }
        }
        switch result {
        case .success:
            logger.info("report spooled", metadata: ["report.seq": "\(seq)", "report.series": "\(report.series.count)",
                                                     "report.session": "\(window.session.map(String.init) ?? "-")",
                                                     "report.gzip_bytes": "\(body.count)", "report.window_end_ms": "\(dated.endMs)"])
        case .failure(let e):
            // The drops this report carried are handed to the next one.
            spool.returnDrops(drops)
            logger.error("report not spooled", metadata: ["report.seq": "\(seq)", "error": "\(e.message)"])
        }
    }
}

/// Windows on the monotonic clock waiting for, then given, wall-clock bounds. Pure.
struct WindowDating {
    struct Dated {
        var window: WindowedAggregation.Window
        var startMs: Int64
        var endMs: Int64
    }

    var anchor: WallClockAnchor
    let maxPending: Int
    private var pending: [WindowedAggregation.Window] = []
    /// Windows dropped while waiting, not yet handed to a report.
    private var droppedWaiting = 0
    /// The wall-clock end of the last window dated.
    private var lastEndMs: Int64?
    /// Differences up to this between a window's start and the previous end are jitter, not a step.
    static let snapMilliseconds: Int64 = 5

    init(anchor: WallClockAnchor, maxPending: Int) {
        self.anchor = anchor
        self.maxPending = maxPending
    }

    var pendingCount: Int { pending.count }

    /// `window` and any that waited before it, dated in order once the anchor has a plausible reading;
    /// otherwise it waits (the oldest dropped past `maxPending`, their number returned).
    mutating func finished(_ window: WindowedAggregation.Window) -> (ready: [Dated], dropped: Int) {
        pending.append(window)
        guard anchor.offsetMilliseconds != nil else {
            let over = max(0, pending.count - maxPending)
            pending.removeFirst(over)
            droppedWaiting += over
            return ([], over)
        }
        var ready: [Dated] = []
        for w in pending {
            var start = anchor.wallMilliseconds(monotonicMicroseconds: w.startMicroseconds)!
            // Consecutive windows meet exactly: the offset moves by a millisecond now and then (NTP
            // slewing, rounding), which would otherwise leave 1 ms overlaps or gaps between them.
            if let last = lastEndMs, abs(start - last) <= Self.snapMilliseconds { start = last }
            let end = max(anchor.wallMilliseconds(monotonicMicroseconds: w.endMicroseconds)!, start + 1)
            ready.append(Dated(window: w, startMs: start, endMs: end))
            lastEndMs = end
        }
        pending.removeAll()
        defer { droppedWaiting = 0 }
        return (ready, droppedWaiting)
    }
}
