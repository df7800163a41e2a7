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
        /// PEM bundle of the CAs that may sign the collector's certificate (a private CA is the normal
        /// case); nil trusts the system's bundle.
        public var caFile: String?
        /// `sha256//<base64>` of the collector's public key (libcurl's pinning syntax; several joined by `;`).
        public var pinnedPublicKey: String?
        /// Allows `http://`: the token then travels in clear. For the demo on one host only.
        public var insecureDemo: Bool
        /// How long the collector may hold the troubleshooting-session long poll open; 0 turns sessions off
        /// (the agent then never asks).
        public var sessionPollSeconds: Int = 25

        public init(url: String, tokenFile: String, requestTimeoutSeconds: Int = 10, caFile: String? = nil,
                    pinnedPublicKey: String? = nil, insecureDemo: Bool = false) {
            self.url = url
            self.tokenFile = tokenFile
            self.requestTimeoutSeconds = requestTimeoutSeconds
            self.caFile = caFile
            self.pinnedPublicKey = pinnedPublicKey
            self.insecureDemo = insecureDemo
        }
    }

    /// The on-disk queue of reports not yet acknowledged (``DiskSpool``).
    public struct Spool: Sendable, Equatable {
        /// Bytes the spool may hold on disk; the oldest windows go first beyond it.
        public var maxBytes: Int
        /// Windows older than this are dropped unsent (counted and reported).
        public var maxAgeHours: Int
        /// `always`: a report counts as spooled only after fsync (one per window). `os`: the kernel writes
        /// it back when it likes; a power cut can lose the last ~30 s of windows, a crash of the agent none.
        public var fsync: FsyncPolicy
        public init(maxBytes: Int = 8 << 20, maxAgeHours: Int = 168, fsync: FsyncPolicy = .always) {
            self.maxBytes = maxBytes
            self.maxAgeHours = maxAgeHours
            self.fsync = fsync
        }
    }

    public enum FsyncPolicy: String, Sendable, Equatable { case always, os }

    public struct Shipping: Sendable, Equatable {
        public var maxReportsPerRequest: Int
        /// Compressed (gzip) bytes of spooled reports one request may carry, past the first report. JSON
        /// inflates 5–10×: the default stays well under the collector's 1 MiB body and 8 MiB inflated limits.
        public var maxRequestBytes: Int
        public var backoffInitialMilliseconds: Int
        public var backoffMaxSeconds: Int
        public init(maxReportsPerRequest: Int = 32, maxRequestBytes: Int = 256 << 10, backoffInitialMilliseconds: Int = 1000, backoffMaxSeconds: Int = 300) {
            self.maxReportsPerRequest = maxReportsPerRequest
            self.maxRequestBytes = maxRequestBytes
            self.backoffInitialMilliseconds = backoffInitialMilliseconds
            self.backoffMaxSeconds = backoffMaxSeconds
        }
    }

    public struct Clock: Sendable, Equatable {
        /// Wall-clock readings before this (Unix ms) are implausible: a router without an RTC boots in
        /// 1970 or in the past. Windows get wall-clock bounds only once the clock has passed it.
        public var wallClockFloorMilliseconds: Int64
        /// Finished windows held in memory while the wall clock is implausible; beyond it the oldest go.
        public var maxUnanchoredWindows: Int
        public init(wallClockFloorMilliseconds: Int64 = Self.defaultFloorMilliseconds, maxUnanchoredWindows: Int = 240) {
            self.wallClockFloorMilliseconds = wallClockFloorMilliseconds
            self.maxUnanchoredWindows = maxUnanchoredWindows
        }
        /// 2026-11-01T00:00:00Z, this release's date: no real clock reads earlier.
        public static let defaultFloorMilliseconds: Int64 = 1_793_491_200_000
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
    public var spool: Spool
    public var shipping: Shipping
    public var clock: Clock
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
                                  requestTimeoutSeconds: try c.int("request_timeout_seconds", default: 10, range: 1...300),
                                  caFile: try c.optionalString("ca_file"), pinnedPublicKey: try c.optionalString("pinned_public_key"),
                                  insecureDemo: try c.bool("insecure_demo", default: false))
        var collectorSettings = collector
        collectorSettings.sessionPollSeconds = try c.int("session_poll_seconds", default: 25, range: 0...30)
        if url.hasPrefix("http://"), !collector.insecureDemo {
            throw ConfigError(file: file, line: c.lineOf("url"), key: "collector.url",
                              message: "http:// would send the device token in clear; use https:// (with collector.ca_file for a private CA), or set collector.insecure_demo: true for a demo on one host")
        }
        if let pin = collector.pinnedPublicKey, !pin.split(separator: ";").allSatisfy({ $0.hasPrefix("sha256//") && $0.count > 10 }) {
            throw ConfigError(file: file, line: c.lineOf("pinned_public_key"), key: "collector.pinned_public_key",
                              message: "expected sha256//<base64 of the SHA-256 of the public key>, several joined by ';'")
        }
        if collector.pinnedPublicKey != nil || collector.caFile != nil, !url.hasPrefix("https://") {
            throw ConfigError(file: file, line: c.lineOf("url"), key: "collector.url",
                              message: "ca_file and pinned_public_key apply to https:// only")
        }
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

        if top.keys.contains("queue") {
            throw ConfigError(file: file, line: top.lineOf("queue"), key: "queue",
                              message: "the in-memory queue was replaced by the on-disk spool in 0.3: use spool.max_bytes and spool.max_age_hours")
        }
        var sp = try top.mapping("spool")
        let spool = Spool(maxBytes: try sp.int("max_bytes", default: 8 << 20, range: (256 << 10)...(1 << 30)),
                          maxAgeHours: try sp.int("max_age_hours", default: 168, range: 1...(24 * 90)),
                          fsync: FsyncPolicy(rawValue: try sp.string("fsync", default: "always", allowed: ["always", "os"]))!)
        try sp.finish()

        var sh = try top.mapping("shipping")
        let shipping = Shipping(maxReportsPerRequest: try sh.int("max_reports_per_request", default: 32, range: 1...100),
                                maxRequestBytes: try sh.int("max_request_bytes", default: 256 << 10, range: (16 << 10)...(4 << 20)),
                                backoffInitialMilliseconds: try sh.int("backoff_initial_ms", default: 1000, range: 10...60_000),
                                backoffMaxSeconds: try sh.int("backoff_max_seconds", default: 300, range: 1...3600))
        try sh.finish()

        var ck = try top.mapping("clock")
        var floor = Clock.defaultFloorMilliseconds
        if let text = try ck.optionalString("wall_clock_floor") {
            guard let ms = parseDate(text) else {
                throw ConfigError(file: file, line: ck.lineOf("wall_clock_floor"), key: "clock.wall_clock_floor",
                                  message: "expected a date YYYY-MM-DD (UTC), found \"\(text)\"")
            }
            floor = ms
        }
        let clock = Clock(wallClockFloorMilliseconds: floor,
                          maxUnanchoredWindows: try ck.int("max_unanchored_windows", default: 240, range: 1...10_000))
        try ck.finish()

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
        return AgentConfiguration(deviceID: deviceID, collector: collectorSettings, stateDirectory: stateDirectory,
                                  sampleIntervalSeconds: interval, reportWindowSeconds: window, maxSeriesPerWindow: maxSeries,
                                  spool: spool, shipping: shipping, clock: clock, link: link, lanClients: lan, wifi: wifi, health: health, capture: capture, privacy: privacy,
                                  logLevel: level)
    }

    /// `YYYY-MM-DD` as Unix milliseconds at 00:00 UTC.
    static func parseDate(_ text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int64(parts[0]), let m = Int64(parts[1]), let d = Int64(parts[2]),
              (1970...9999).contains(y), (1...12).contains(m), (1...31).contains(d) else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let yy = m <= 2 ? y - 1 : y
        let era = yy / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return (era * 146_097 + doe - 719_468) * 86_400_000
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
