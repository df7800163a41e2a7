#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import FoundationEssentials
import Logging
import ServiceLifecycle
import Synchronization
import TelemetryModel

/// The settings the agent runs with now: its local configuration, overridden by the collector's remote
/// settings once they were fetched and found valid. Read by the pipeline every round, changed by
/// ``ConfigCheckIn``.
public final class RuntimeSettings: Sendable {
    public struct Current: Sendable, Equatable {
        /// The remote settings' version in force, 0 while the local configuration rules alone.
        public var version: UInt64
        public var intervalSeconds: Int
        public var windowSeconds: Int
        /// Polled samplers that run (by name); a sampler not started at launch cannot be switched on.
        public var enabled: Set<String>
        /// The last remote version refused, if any, so it is fetched once, not at every acknowledgement.
        public var rejectedVersion: UInt64?
        /// The troubleshooting session whose profile is in force (its interval and window replace the
        /// ones above), nil at the normal profile.
        public var session: Int64?
    }

    /// A troubleshooting session as the agent runs it: the profile, and the end on the monotonic clock
    /// (computed from the time left that the collector said, so a wrong wall clock cannot stretch it).
    public struct Session: Sendable, Equatable {
        public var id: Int64
        public var intervalSeconds: Int
        public var windowSeconds: Int
        public var ends: ContinuousClock.Instant
        public init(id: Int64, intervalSeconds: Int, windowSeconds: Int, ends: ContinuousClock.Instant) {
            self.id = id
            self.intervalSeconds = intervalSeconds
            self.windowSeconds = windowSeconds
            self.ends = ends
        }
    }
    private let sessionState = Mutex<Session?>(nil)

    private let state: Mutex<Current>
    /// Samplers the agent started with: the only ones remote settings can switch.
    public let available: Set<String>
    let localInterval: Int
    let localWindow: Int

    public init(configuration: AgentConfiguration, available: Set<String>) {
        self.available = available
        localInterval = configuration.sampleIntervalSeconds
        localWindow = configuration.reportWindowSeconds
        state = Mutex(Current(version: 0, intervalSeconds: configuration.sampleIntervalSeconds,
                              windowSeconds: configuration.reportWindowSeconds, enabled: available, rejectedVersion: nil))
    }

    /// The settings in force now: a running session's profile over the remote or local settings. A
    /// session past its end no longer applies, whether or not the collector was reachable to say so.
    public var current: Current {
        var c = state.withLock { $0 }
        if let s = sessionState.withLock({ $0 }), ContinuousClock.now < s.ends {
            c.intervalSeconds = s.intervalSeconds
            c.windowSeconds = s.windowSeconds
            c.session = s.id
        }
        return c
    }

    /// The session the agent runs, including one that has just run out (so its end is noticed once).
    public var session: Session? { sessionState.withLock { $0 } }
    public func startSession(_ s: Session) { sessionState.withLock { $0 = s } }
    public func endSession() { sessionState.withLock { $0 = nil } }

    /// Applies `document` or says why it cannot be; nothing changes on a refusal.
    public func apply(_ document: AgentSettingsDocument) -> String? {
        let s = document.settings
        if let v = s.violation(localInterval: localInterval, localWindow: localWindow) {
            refuse(document.version)
            return "\(v.path): \(v.message)"
        }
        for (name, on) in s.samplers.sorted(by: { $0.key < $1.key }) where on && !available.contains(name) {
            refuse(document.version)
            return "samplers.\(name): not started by the local configuration (or not available on this device); it cannot be switched on remotely"
        }
        state.withLock { c in
            c.version = document.version
            c.intervalSeconds = s.intervalSeconds ?? localInterval
            c.windowSeconds = s.windowSeconds ?? localWindow
            c.enabled = available.filter { s.samplers[$0] ?? true }
            c.rejectedVersion = nil
        }
        return nil
    }

    private func refuse(_ version: UInt64) { state.withLock { $0.rejectedVersion = version } }
}

/// Check-in: each acknowledgement names the settings version the collector wants this device to run. A
/// version the agent does not run (and has not refused) is fetched from `GET v1/config`, validated,
/// applied without a restart and kept in `<state_dir>/remote-settings.json` for the next start. An
/// invalid one is refused, the old settings stay, and the reason is logged and the refused version
/// reported (`agent.config.rejected_version`).
public struct ConfigCheckIn: Sendable {
    let transport: any ReportTransport
    let settings: RuntimeSettings
    let stateDirectory: String
    let logger: Logger

    public init(transport: any ReportTransport, settings: RuntimeSettings, stateDirectory: String, logger: Logger) {
        self.transport = transport
        self.settings = settings
        self.stateDirectory = stateDirectory
        self.logger = logger
    }

    var path: String { stateDirectory + "/remote-settings.json" }

    /// Loads the settings kept from the last run, if any (a file that is no longer valid is ignored and said so).
    public func restore() {
        guard access(path, F_OK) == 0 else { return }
        do {
            let text = try AgentState.read(path)
            let doc = try JSONDecoder().decode(AgentSettingsDocument.self, from: Data(text.utf8))
            if let reason = settings.apply(doc) {
                logger.error("kept remote settings no longer apply; running the local configuration", metadata: ["config.version": "\(doc.version)", "reason": "\(reason)"])
            } else {
                logger.info("remote settings restored", metadata: ["config.version": "\(doc.version)"])
            }
        } catch {
            logger.error("kept remote settings unreadable; running the local configuration", metadata: ["file": "\(path)", "error": "\(error)"])
        }
    }

    /// Called with the version an acknowledgement carried.
    public func desired(version: UInt64) async {
        let now = settings.current
        guard version != now.version, version != now.rejectedVersion else { return }
        switch await transport.get(path: "v1/config") {
        case .failure(let e):
            logger.warning("remote settings not fetched, will try at the next acknowledgement", metadata: ["config.version": "\(version)", "error": "\(e.message)"])
        case .success(let r) where r.status == 200:
            let doc: AgentSettingsDocument
            do { doc = try JSONDecoder().decode(AgentSettingsDocument.self, from: Data(r.body)) } catch {
                logger.error("remote settings refused: not readable", metadata: ["config.version": "\(version)", "error": "\(error)"])
                return
            }
            if let reason = settings.apply(doc) {
                logger.error("remote settings refused; keeping the current ones", metadata: ["config.version": "\(doc.version)", "reason": "\(reason)"])
                return
            }
            let c = settings.current
            logger.notice("remote settings applied", metadata: [
                "config.version": "\(c.version)", "interval.seconds": "\(c.intervalSeconds)", "window.seconds": "\(c.windowSeconds)",
                "samplers": "\(c.enabled.sorted().joined(separator: ","))",
            ])
            do { try AgentState.writeAtomically(path, Array(r.body), mode: 0o600) } catch {
                logger.warning("remote settings applied but not kept for the next start", metadata: ["error": "\(error)"])
            }
        case .success(let r):
            logger.warning("remote settings not fetched", metadata: ["config.version": "\(version)", "http.status": "\(r.status)",
                                                                      "collector.error": "\(Shipper.errorText(r.body))"])
        }
    }
}

/// Troubleshooting sessions reach the agent by long poll: `GET v1/session?wait=25&known=ID` returns as soon
/// as the session the collector wants differs from the one the agent runs (or after 25 s with no change),
/// so a session started by an operator arrives within about a second. The agent switches to the
/// session's profile, tags the windows it makes, and reverts when the collector says the session ended or
/// at the end time by its own monotonic clock, whichever comes first: an agent cut off from the
/// collector does not stay in a session.
public struct SessionCheckIn: Service, CustomStringConvertible {
    let transport: any ReportTransport
    let settings: RuntimeSettings
    let logger: Logger
    /// How long the collector may hold a poll open (it answers at once when something changed).
    let waitSeconds: Int

    /// What service-lifecycle logs for this service.
    public var description: String { "SessionCheckIn(wait: \(waitSeconds) s)" }

    public init(transport: any ReportTransport, settings: RuntimeSettings, waitSeconds: Int = 25, logger: Logger) {
        self.transport = transport
        self.settings = settings
        self.waitSeconds = waitSeconds
        self.logger = logger
    }

    struct Answer: Decodable {
        struct Session: Decodable {
            let id: Int64
            let intervalSeconds: Int
            let windowSeconds: Int
            let remainingMs: Int64
            enum CodingKeys: String, CodingKey {
                case id
                case intervalSeconds = "interval_seconds", windowSeconds = "window_seconds", remainingMs = "remaining_ms"
            }
        }
        let session: Session?
    }

    public func run() async throws {
        var failures = 0
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let known = settings.current.session ?? 0
            let path = "v1/session?wait=\(waitSeconds)&known=\(known)"
            guard let result = await untilShutdown({ [transport] in await transport.get(path: path) }) else { break }
            var pause: Duration = .zero
            switch result {
            case .success(let r) where r.status == 200:
                failures = 0
                do { apply(try JSONDecoder().decode(Answer.self, from: Data(r.body))) } catch {
                    logger.error("troubleshooting session answer unreadable", metadata: ["error": "\(error)"])
                    pause = .seconds(30)
                }
            case .success(let r):
                failures += 1
                logger.warning("troubleshooting session check failed", metadata: ["http.status": "\(r.status)", "collector.error": "\(Shipper.errorText(r.body))"])
            case .failure(let e):
                failures += 1
                // Said once per outage at the default level (the shipper reports the same outage too).
                if failures == 3 { logger.warning("troubleshooting session check failing, retrying with backoff", metadata: ["error": "\(e.message)"]) }
                else { logger.debug("troubleshooting session check failed", metadata: ["error": "\(e.message)"]) }
            }
            if failures > 0 {
                // Full jitter, up to a minute: a fleet whose collector comes back does not return at once.
                let cap = min(60.0, pow(2, Double(min(failures, 6))))
                pause = .milliseconds(Int64(Double.random(in: 0.5...max(0.5, cap)) * 1000))
            }
            if pause > .zero {
                // A session's end needs no poll: ``RuntimeSettings/current`` drops it at its end time.
                let wait = pause
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            }
        }
    }

    func apply(_ answer: Answer) {
        let running = settings.session
        guard let s = answer.session, s.remainingMs > 0 else {
            if let running {
                settings.endSession()
                if ContinuousClock.now < running.ends {  // one that ran out was already said by the pipeline
                    logger.notice("troubleshooting session ended by the collector; back to the normal profile", metadata: ["session.id": "\(running.id)"])
                }
            }
            return
        }
        guard s.intervalSeconds >= 1, s.windowSeconds >= s.intervalSeconds, s.windowSeconds <= 3600, s.windowSeconds % s.intervalSeconds == 0 else {
            logger.error("troubleshooting session refused: its profile is not valid", metadata: [
                "session.id": "\(s.id)", "interval.seconds": "\(s.intervalSeconds)", "window.seconds": "\(s.windowSeconds)"])
            return
        }
        let ends = ContinuousClock.now + .milliseconds(s.remainingMs)
        settings.startSession(.init(id: s.id, intervalSeconds: s.intervalSeconds, windowSeconds: s.windowSeconds, ends: ends))
        if running?.id != s.id {
            logger.notice("troubleshooting session started", metadata: [
                "session.id": "\(s.id)", "interval.seconds": "\(s.intervalSeconds)", "window.seconds": "\(s.windowSeconds)",
                "session.remaining_ms": "\(s.remainingMs)"])
        }
    }
}

/// Awaits `operation`, or returns nil as soon as graceful shutdown begins (the operation then finishes on
/// its own, unobserved): a long poll must not hold up the agent's stop.
func untilShutdown<T: Sendable>(_ operation: @escaping @Sendable () async -> T) async -> T? {
    let (stream, continuation) = AsyncStream<T?>.makeStream(bufferingPolicy: .bufferingNewest(2))
    let work = Task { continuation.yield(await operation()) }
    let watcher = Task {
        if (try? await gracefulShutdown()) != nil { continuation.yield(nil) }
    }
    var iterator = stream.makeAsyncIterator()
    let first = await iterator.next() ?? nil
    watcher.cancel()
    continuation.finish()
    _ = work
    return first
}
