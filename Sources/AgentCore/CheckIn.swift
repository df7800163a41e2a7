#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import FoundationEssentials
import Logging
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
    }

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

    public var current: Current { state.withLock { $0 } }

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
