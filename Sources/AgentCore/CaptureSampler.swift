#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import Logging
import PacketCapture
import Pseudonymisation
import Synchronization
import TrafficAnalysis

/// Live, header-only packet analysis: one capture thread per interface (never the cooperative pool)
/// reads packets with libpcap at the header snaplen and feeds a bounded ``TrafficAnalyzer``. A pushing
/// sense: the first capture thread pushes each interval's figures into the agent's ``SamplePath`` on
/// its own clock (the 200 ms read timeout keeps it ticking without traffic); `stop` pushes the last one.
public final class CaptureSampler: PushingSense, @unchecked Sendable {  // mutable state behind `state`/`target`; threads joined in stop
    public let name = "capture"
    private let config: AgentConfiguration.Capture
    private let pseudonymiser: Pseudonymiser
    private let logger: Logger?
    private let state: Mutex<State>
    private let stopping = Atomic<Bool>(false)
    private var threads: [pthread_t] = []
    private var handles: [CaptureHandle] = []
    private let target = Mutex<Target?>(nil)

    struct Target {
        var path: SamplePath
        var intervalNanoseconds: UInt64
        var epochs: EpochRule
        var nextTick: UInt64
    }

    struct State {
        var analyzer: TrafficAnalyzer
        var kernelDrops: [String: UInt64] = [:]
        var reportedDrops: UInt64 = 0
        var failures: [String] = []
    }

    /// The snaplen actually set on each handle, for tests and `sample --once`.
    public var snaplens: [String: Int] { Dictionary(uniqueKeysWithValues: handles.map { ($0.source, $0.snaplen) }) }

    /// Opens every configured interface (a snaplen above the header maximum, an unknown interface or a
    /// bad filter stops the agent at start with the reason) and starts the capture threads.
    public init(config: AgentConfiguration.Capture, pseudonymiser: Pseudonymiser, logger: Logger?) throws {
        self.config = config
        self.pseudonymiser = pseudonymiser
        self.logger = logger
        let limits = TrafficLimits(maxFlows: config.maxFlows, idleSecondsTCP: config.flowIdleSeconds,
                                   idleSecondsDatagram: min(60, config.flowIdleSeconds))
        state = Mutex(State(analyzer: TrafficAnalyzer(limits: limits)))
        let snaplen = config.snaplen == 0 ? HeaderLimits.liveCaptureBytes : config.snaplen
        for interface in config.interfaces {
            handles.append(try CaptureHandle.openLive(interface: interface, snaplen: snaplen, immediate: config.immediate,
                                                      bufferBytes: config.bufferKiB * 1024,
                                                      filter: config.filter.isEmpty ? nil : config.filter))
        }
        // The snaplen libpcap actually set on each handle: the header maximum, never more.
        logger?.info("capture: started", metadata: ["interfaces": "\(config.interfaces.joined(separator: ","))",
                                                    "snaplen": "\(handles.map { String($0.snaplen) }.joined(separator: ","))",
                                                    "max_flows": "\(config.maxFlows)"])
    }

    deinit { stop() }

    public func start(pushingInto path: SamplePath, interval: Duration, epochs: EpochRule) {
        let ns = UInt64(interval.components.seconds) * 1_000_000_000 + UInt64(interval.components.attoseconds / 1_000_000_000)
        target.withLock { $0 = Target(path: path, intervalNanoseconds: ns, epochs: epochs,
                                      nextTick: SampleTime.now().monotonicNanoseconds + ns) }
        for (i, handle) in handles.enumerated() {
            do { try startThread(handle, ticker: i == 0) } catch { logger?.error("capture: \(error)") }
        }
    }

    /// Stops and joins the capture threads, then pushes the last interval.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for h in handles { h.breakLoop() }
        for t in threads { pthread_join(t, nil) }
        threads = []
        pushInterval(final: true)
    }

    private final class Context {
        let sampler: CaptureSampler
        let handle: CaptureHandle
        let ticker: Bool
        init(_ s: CaptureSampler, _ h: CaptureHandle, _ t: Bool) { sampler = s; handle = h; ticker = t }
    }

    private func startThread(_ handle: CaptureHandle, ticker: Bool) throws {
        let context = Unmanaged.passRetained(Context(self, handle, ticker)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let ctx = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            ctx.sampler.loop(ctx.handle, ticker: ctx.ticker)
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Context>.fromOpaque(context).release()
            throw AgentError("capture: cannot start a capture thread for \(handle.source): error \(rc)")
        }
        threads.append(thread)
    }

    /// The capture thread: read with a 200 ms timeout so a stop request is seen, parse headers outside the
    /// lock, analyse inside it.
    private func loop(_ handle: CaptureHandle, ticker: Bool) {
        let linkType = handle.linkType
        let supported = PacketParser.supportedLinkTypes.contains(linkType)
        while !stopping.load(ordering: .acquiring) {
            do {
                let outcome = try handle.next { meta, view in
                    let parsed: Result<PacketHeaders, SkipReason> = supported
                        ? PacketParser.parse(linkType: linkType, view: &view, originalLength: meta.originalLength)
                        : .failure(.unsupportedLinkType)
                    state.withLock { s in
                        switch parsed {
                        case .success(let h): s.analyzer.process(meta, h)
                        case .failure(let reason): s.analyzer.skip(meta, reason: reason)
                        }
                    }
                }
                if outcome == .end { break }
            } catch {
                state.withLock { $0.failures.append("\(handle.source): \(error)") }
                break
            }
            if ticker { pushInterval(final: false) }
        }
    }

    /// Pushes the interval's figures when its time has come (or at stop).
    private func pushInterval(final: Bool) {
        let now = SampleTime.now()
        let due: Target? = target.withLock { t in
            guard var current = t, final || now.monotonicNanoseconds >= current.nextTick else { return nil }
            while current.nextTick <= now.monotonicNanoseconds { current.nextTick += current.intervalNanoseconds }
            t = current
            return current
        }
        guard let due else { return }
        var batch = SampleBatch()
        let epoch = due.epochs.epoch(at: now)
        sample(SampleContext(time: now, epoch: epoch), into: &batch)
        due.path.push(TimedBatch(time: now, epoch: epoch, batch: batch))
    }

    /// The interval's figures as samples (and the interval starts anew).
    func sample(_ context: SampleContext, into batch: inout SampleBatch) {
        var drops: UInt64 = 0
        for h in handles { if let d = h.kernelDrops() { drops += UInt64(d.dropped) } }
        let (interval, newDrops, failures) = state.withLock { s -> (TrafficInterval, UInt64, [String]) in
            let delta = drops >= s.reportedDrops ? drops - s.reportedDrops : drops
            s.reportedDrops = drops
            let f = s.failures
            s.failures = []
            return (s.analyzer.takeInterval(), delta, f)
        }
        for f in failures { logger?.error("capture stopped", metadata: ["error": "\(f)"]) }
        TrafficSamples.add(interval, pseudonymiser: pseudonymiser, epoch: context.epoch, maxClients: config.maxClients,
                           captureDrops: newDrops, into: &batch)
    }
}
