import TelemetryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The agent's validated configuration. `agent-config/agent.yaml` documents every key.
public struct AgentConfiguration: Sendable, Equatable {
    public struct Collector: Sendable, Equatable {
        public var url: String
        /// File holding the device's bearer token (mode 0600).
        public var tokenFile: String
        public var requestTimeoutSeconds: Int
    }

    public struct Link: Sendable, Equatable {
        public var enabled: Bool
        public var interfaces: [String]
        public var exclude: [String]
        public var includeLoopback: Bool

        public init(enabled: Bool, interfaces: [String], exclude: [String], includeLoopback: Bool) {
            self.enabled = enabled
            self.interfaces = interfaces
            self.exclude = exclude
            self.includeLoopback = includeLoopback
        }

        /// Whether interface `name` (loopback or not) is sampled.
        public func samples(_ name: String, isLoopback: Bool) -> Bool {
            guard enabled else { return false }
            if isLoopback, !includeLoopback { return false }
            if exclude.contains(where: { globMatches($0, name) }) { return false }
            return interfaces.contains { globMatches($0, name) }
        }
    }

    public struct LANClients: Sendable, Equatable {
        public var enabled: Bool
        public var interfaces: [String]
        public var maxClients: Int

        public init(enabled: Bool, interfaces: [String], maxClients: Int) {
            self.enabled = enabled
            self.interfaces = interfaces
            self.maxClients = maxClients
        }
    }

    public struct WiFi: Sendable, Equatable {
        public var enabled: Bool
        /// Wireless interfaces sampled (globs); AP, station (uplink) and mesh interfaces are read.
        public var interfaces: [String]
        /// Stations itemised per interface and window; the rest are folded into `peer=others`.
        public var maxClients: Int
        /// Triggering scans is opt-in: a scan takes the radio off-channel and clients notice.
        public var triggerScans: Bool
        public var scanMinIntervalSeconds: Int
        /// Identical noise readings in a row after which the noise is deemed a driver constant.
        public var noiseConstantSamples: Int

        public init(enabled: Bool = true, interfaces: [String] = ["*"], maxClients: Int = 32, triggerScans: Bool = false,
                    scanMinIntervalSeconds: Int = 900, noiseConstantSamples: Int = 30) {
            self.enabled = enabled
            self.interfaces = interfaces
            self.maxClients = maxClients
            self.triggerScans = triggerScans
            self.scanMinIntervalSeconds = scanMinIntervalSeconds
            self.noiseConstantSamples = noiseConstantSamples
        }
    }

    public struct Capture: Sendable, Equatable {
        public var enabled: Bool
        /// Interfaces captured on (exact names): typically the LAN bridge.
        public var interfaces: [String]
        /// A BPF filter expression, empty for none.
        public var filter: String
        /// 0: the header maximum computed by the agent. Larger values are refused at start.
        public var snaplen: Int
        public var immediate: Bool
        public var bufferKiB: Int
        public var maxFlows: Int
        public var flowIdleSeconds: Int
        public var maxClients: Int

        public init(enabled: Bool = false, interfaces: [String] = ["br-lan"], filter: String = "", snaplen: Int = 0, immediate: Bool = false,
                    bufferKiB: Int = 2048, maxFlows: Int = 4096, flowIdleSeconds: Int = 300, maxClients: Int = 16) {
            self.enabled = enabled
            self.interfaces = interfaces
            self.filter = filter
            self.snaplen = snaplen
            self.immediate = immediate
            self.bufferKiB = bufferKiB
            self.maxFlows = maxFlows
            self.flowIdleSeconds = flowIdleSeconds
            self.maxClients = maxClients
        }
    }

    public struct Health: Sendable, Equatable {
        public var enabled: Bool
        /// Root of the /proc and /sys trees read (tests point it elsewhere).
        public var procRoot: String
        public var sysRoot: String
        public init(enabled: Bool = true, procRoot: String = "/proc", sysRoot: String = "/sys") {
            self.enabled = enabled
            self.procRoot = procRoot
            self.sysRoot = sysRoot
        }
    }

    public struct Privacy: Sendable, Equatable {
        public var keyEpochDays: Int
        public var reportOUI: Bool
        /// SSIDs the outgoing-data guard must never let out (the router's own networks).
        public var guardSSIDs: [String]
    }

    public var deviceID: String
    public var collector: Collector
    public var stateDirectory: String
    public var sampleIntervalSeconds: Int
    public var reportWindowSeconds: Int
    public var maxSeriesPerWindow: Int
    public var maxQueuedReports: Int
    public var link: Link
    public var lanClients: LANClients
    public var wifi: WiFi
    public var health: Health
    public var capture: Capture
    public var privacy: Privacy
    public var logLevel: String

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads and validates `path`.
    public static func load(path: String) throws(ConfigError) -> AgentConfiguration {
        let text = try readFile(path)
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> AgentConfiguration {
        let root = try YAMLDocument.parse(text, file: file)
        var top = try MappingReader(root, file: file)

        let deviceID = try top.string("device_id")
        guard (1...64).contains(deviceID.utf8.count),
              deviceID.utf8.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) else {
            throw ConfigError(file: file, line: root.line, key: "device_id",
                              message: "must be 1–64 of A–Z a–z 0–9 - _ . (a pseudonymous id, never a serial number or MAC)")
        }
        if let found = IdentifierGuard().finding(in: deviceID) {
            throw ConfigError(file: file, line: root.line, key: "device_id",
                              message: "looks like a \(found.rawValue); use a pseudonymous id (e.g. the collector's device id), never a hardware address")
        }
        var c = try top.mapping("collector")
        let url = try c.string("url")
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ConfigError(file: file, line: c.line, key: "collector.url", message: "must start with http:// or https://, found \"\(url)\"")
        }
        let collector = Collector(url: url, tokenFile: try c.string("token_file"),
                                  requestTimeoutSeconds: try c.int("request_timeout_seconds", default: 10, range: 1...300))
        try c.finish()

        let stateDirectory = try top.string("state_dir", default: "/var/lib/meetpunt-agent")

        var s = try top.mapping("sampling")
        let interval = try s.int("interval_seconds", default: 10, range: 1...3600)
        let window = try s.int("window_seconds", default: 60, range: 1...3600)
        let maxSeries = try s.int("max_series_per_window", default: 2000, range: 10...4900)
        guard window >= interval, window % interval == 0 else {
            throw ConfigError(file: file, line: s.lineOf("window_seconds"), key: "sampling.window_seconds",
                              message: "\(window) must be a whole multiple of sampling.interval_seconds (\(interval))")
        }
        try s.finish()

        var q = try top.mapping("queue")
        let maxQueued = try q.int("max_reports", default: 60, range: 1...10_000)
        try q.finish()

        var l = try top.mapping("link")
        let link = Link(enabled: try l.bool("enabled", default: true),
                        interfaces: try l.stringList("interfaces", default: ["*"]),
                        exclude: try l.stringList("exclude", default: []),
                        includeLoopback: try l.bool("include_loopback", default: false))
        try l.finish()

        var n = try top.mapping("lan_clients")
        let lan = LANClients(enabled: try n.bool("enabled", default: true),
                             interfaces: try n.stringList("interfaces", default: ["br-lan", "lan*"]),
                             maxClients: try n.int("max_clients", default: 64, range: 1...1024))
        try n.finish()

        var w = try top.mapping("wifi")
        let wifiEnabled = try w.bool("enabled", default: true)
        let wifiInterfaces = try w.stringList("interfaces", default: ["*"])
        let wifiMaxClients = try w.int("max_clients", default: 32, range: 1...256)
        let noiseConstant = try w.int("noise_constant_samples", default: 30, range: 3...10_000)
        var sc = try w.mapping("scan")
        let trigger = try sc.bool("trigger", default: false)
        let scanInterval = try sc.int("min_interval_seconds", default: 900, range: 60...86_400)
        try sc.finish()
        try w.finish()
        let wifi = WiFi(enabled: wifiEnabled, interfaces: wifiInterfaces, maxClients: wifiMaxClients, triggerScans: trigger,
                        scanMinIntervalSeconds: scanInterval, noiseConstantSamples: noiseConstant)

        var h = try top.mapping("health")
        let health = Health(enabled: try h.bool("enabled", default: true))
        try h.finish()

        var cp = try top.mapping("capture")
        let capture = Capture(enabled: try cp.bool("enabled", default: false),
                              interfaces: try cp.stringList("interfaces", default: ["br-lan"]),
                              filter: try cp.string("filter", default: ""),
                              snaplen: try cp.int("snaplen", default: 0, range: 0...65_535),
                              immediate: try cp.bool("immediate", default: false),
                              bufferKiB: try cp.int("buffer_kib", default: 2048, range: 64...65_536),
                              maxFlows: try cp.int("max_flows", default: 4096, range: 64...1_048_576),
                              flowIdleSeconds: try cp.int("flow_idle_seconds", default: 300, range: 10...86_400),
                              maxClients: try cp.int("max_clients", default: 16, range: 1...256))
        try cp.finish()

        var p = try top.mapping("privacy")
        let privacy = Privacy(keyEpochDays: try p.int("key_epoch_days", default: 30, range: 1...366),
                              reportOUI: try p.bool("report_oui", default: true),
                              guardSSIDs: try p.stringList("guard_ssids", default: []))
        try p.finish()

        var g = try top.mapping("logging")
        let level = try g.string("level", default: "info", allowed: logLevels)
        try g.finish()

        try top.finish()
        return AgentConfiguration(deviceID: deviceID, collector: collector, stateDirectory: stateDirectory,
                                  sampleIntervalSeconds: interval, reportWindowSeconds: window, maxSeriesPerWindow: maxSeries,
                                  maxQueuedReports: maxQueued, link: link, lanClients: lan, wifi: wifi, health: health, capture: capture, privacy: privacy,
                                  logLevel: level)
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    static func readFile(_ path: String) throws(ConfigError) -> String {
        guard let f = fopen(path, "rb") else {
            throw ConfigError(file: path, line: nil, key: nil, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n == 0 { break }
            bytes += chunk[..<n]
            guard bytes.count <= 1 << 20 else {
                throw ConfigError(file: path, line: nil, key: nil, message: "larger than 1 MiB; is this the right file?")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
