import Foundation
import TelemetryModel

/// The collector's validated configuration. `collector/collector.yaml` documents every key.
public struct CollectorConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var sqlitePath: String
    public var retentionFile: String
    public var maxBodyBytes: Int
    public var maxDecompressedBytes: Int
    public var maxClockSkewSeconds: Int
    public var maxSeriesPerReport: Int
    public var maxLabelsPerSeries: Int
    public var purgeIntervalSeconds: Int
    /// SSIDs the ingest guard rejects in any label, as the agent's guard does.
    public var guardSSIDs: [String]
    public var logLevel: String
    /// Reports one `POST /v1/report-batches` may carry.
    public var maxReportsPerBatch: Int = 100
    /// A fleet cohort is answered only when at least this many reports contributed to it.
    public var fleetMinReports: Int = 10
    /// Serve HTTPS with this certificate chain and key (PEM files); nil serves plain HTTP.
    public var tls: TLSFiles?
    /// Troubleshooting sessions: their length when none is asked for, the longest allowed, and the profile
    /// the agent switches to.
    public var sessions = SessionSettings()
    /// Export the fleet aggregates over OTLP/HTTP; nil: no export.
    public var otlp: FleetOTLPExport.Settings?
    /// Store in PostgreSQL instead of the SQLite file at ``sqlitePath``; nil: SQLite.
    public var postgres: PostgresSettings?

    /// Where the PostgreSQL server is and how to log in. The password is read from a file (never from
    /// the configuration itself, never logged); the description leaves it out.
    public struct PostgresSettings: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var database: String
        public var user: String
        /// A file holding the password (first line); nil: no password (peer or trust authentication).
        public var passwordFile: String?
        /// `disable`, `prefer` or `require` (require verifies the server's certificate against the system roots).
        public var tls: String
        /// Connections this process opens at most.
        public var maxConnections: Int

        public init(host: String = "127.0.0.1", port: Int = 5432, database: String = "meetpunt", user: String = "meetpunt",
                    passwordFile: String? = nil, tls: String = "prefer", maxConnections: Int = 8) {
            self.host = host
            self.port = port
            self.database = database
            self.user = user
            self.passwordFile = passwordFile
            self.tls = tls
            self.maxConnections = maxConnections
        }

        public var description: String { "postgresql://\(user)@\(host):\(port)/\(database)" }
    }

    public struct SessionSettings: Sendable, Equatable {
        public var defaultMinutes = 30
        public var maxMinutes = 240
        public var intervalSeconds = 1
        public var windowSeconds = 10
        public init() {}
    }

    public struct TLSFiles: Sendable, Equatable {
        public var certificateChainFile: String
        public var privateKeyFile: String
        public init(certificateChainFile: String, privateKeyFile: String) {
            self.certificateChainFile = certificateChainFile
            self.privateKeyFile = privateKeyFile
        }
    }

    public init(host: String = "127.0.0.1", port: Int = 8080, sqlitePath: String, retentionFile: String,
                maxBodyBytes: Int = 1 << 20, maxDecompressedBytes: Int = 8 << 20, maxClockSkewSeconds: Int = 300,
                maxSeriesPerReport: Int = 5000, maxLabelsPerSeries: Int = 8, purgeIntervalSeconds: Int = 600,
                guardSSIDs: [String] = [], logLevel: String = "info") {
        self.host = host
        self.port = port
        self.sqlitePath = sqlitePath
        self.retentionFile = retentionFile
        self.maxBodyBytes = maxBodyBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.maxClockSkewSeconds = maxClockSkewSeconds
        self.maxSeriesPerReport = maxSeriesPerReport
        self.maxLabelsPerSeries = maxLabelsPerSeries
        self.purgeIntervalSeconds = purgeIntervalSeconds
        self.guardSSIDs = guardSSIDs
        self.logLevel = logLevel
    }

    /// Loads `path`. Relative paths inside it (the SQLite file, the retention file) resolve against the
    /// configuration file's directory.
    public static func load(path: String) throws(CollectorError) -> CollectorConfiguration {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CollectorError(.configuration, "\(path): cannot read: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(CollectorError) -> CollectorConfiguration {
        let base = (file as NSString).deletingLastPathComponent
        func resolve(_ p: String) -> String { p.hasPrefix("/") || base.isEmpty ? p : base + "/" + p }

        var top = try YAMLMappingReader(YAMLMappingReader.load(file: file, text: text), file: file)
        var listen = try top.mapping("listen")
        let host = try listen.string("host", default: "127.0.0.1")
        let port = try listen.int("port", default: 8080, range: 0...65535)
        var tls: TLSFiles?
        if listen.keys.contains("tls") {
            var t = try listen.mapping("tls")
            tls = TLSFiles(certificateChainFile: resolve(try t.string("certificate_file")), privateKeyFile: resolve(try t.string("private_key_file")))
            try t.finish()
        }
        try listen.finish()

        var storage = try top.mapping("storage")
        let backend = try storage.string("backend", default: "sqlite", allowed: ["sqlite", "postgres"])
        let sqlitePath = resolve(try storage.string("sqlite_path", default: "../var/collector.sqlite"))
        var postgres: PostgresSettings?
        if storage.keys.contains("postgres") {
            var p = try storage.mapping("postgres")
            var settings = PostgresSettings()
            settings.host = try p.string("host", default: settings.host)
            settings.port = try p.int("port", default: settings.port, range: 1...65535)
            settings.database = try p.string("database", default: settings.database)
            settings.user = try p.string("user", default: settings.user)
            if p.keys.contains("password_file") { settings.passwordFile = resolve(try p.string("password_file")) }
            settings.tls = try p.string("tls", default: settings.tls, allowed: ["disable", "prefer", "require"])
            settings.maxConnections = try p.int("max_connections", default: settings.maxConnections, range: 1...500)
            try p.finish()
            postgres = settings
        }
        if backend == "postgres" && postgres == nil {
            throw CollectorError(.configuration, "\(file): storage.backend is postgres but there is no storage.postgres section (host, port, database, user, password_file)")
        }
        if backend == "sqlite" { postgres = nil }
        try storage.finish()

        let retentionFile = resolve(try top.string("retention_file", default: "retention.yaml"))

        var ingest = try top.mapping("ingest")
        let maxBody = try ingest.int("max_body_bytes", default: 1 << 20, range: 1024...(64 << 20))
        let maxInflated = try ingest.int("max_decompressed_bytes", default: 8 << 20, range: 1024...(256 << 20))
        let skew = try ingest.int("max_clock_skew_seconds", default: 300, range: 0...86_400)
        let maxSeries = try ingest.int("max_series_per_report", default: 5000, range: 1...100_000)
        let maxLabels = try ingest.int("max_labels_per_series", default: 8, range: 1...64)
        let ssids = try ingest.stringList("guard_ssids", default: [])
        let maxBatch = try ingest.int("max_reports_per_batch", default: 100, range: 1...10_000)
        try ingest.finish()

        var purge = try top.mapping("purge")
        let purgeInterval = try purge.int("interval_seconds", default: 600, range: 10...86_400)
        try purge.finish()

        var fleetSection = try top.mapping("fleet")
        let fleetMin = try fleetSection.int("min_reports", default: 10, range: 1...1_000_000)
        try fleetSection.finish()

        var sessionSection = try top.mapping("sessions")
        var sessions = SessionSettings()
        sessions.maxMinutes = try sessionSection.int("max_minutes", default: 240, range: 1...1440)
        sessions.defaultMinutes = try sessionSection.int("default_minutes", default: min(30, sessions.maxMinutes), range: 1...sessions.maxMinutes)
        sessions.intervalSeconds = try sessionSection.int("interval_seconds", default: 1, range: 1...60)
        sessions.windowSeconds = try sessionSection.int("window_seconds", default: 10, range: sessions.intervalSeconds...600)
        guard sessions.windowSeconds % sessions.intervalSeconds == 0 else {
            throw CollectorError(.configuration, "\(file): sessions.window_seconds (\(sessions.windowSeconds)) must be a whole multiple of sessions.interval_seconds (\(sessions.intervalSeconds))")
        }
        try sessionSection.finish()

        var otlp: FleetOTLPExport.Settings?
        if top.keys.contains("otlp") {
            var o = try top.mapping("otlp")
            let endpoint = try o.string("endpoint")
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                throw CollectorError(.configuration, "\(file): otlp.endpoint must be an http:// or https:// URL (the OTLP/HTTP metrics URL, e.g. http://otel-collector:4318/v1/metrics)")
            }
            otlp = FleetOTLPExport.Settings(endpoint: endpoint, intervalSeconds: try o.int("interval_seconds", default: 60, range: 1...3600))
            try o.finish()
        }

        var logging = try top.mapping("logging")
        let level = try logging.string("level", default: "info", allowed: ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        try logging.finish()
        try top.finish()

        var c = CollectorConfiguration(host: host, port: port, sqlitePath: sqlitePath, retentionFile: retentionFile,
                                       maxBodyBytes: maxBody, maxDecompressedBytes: maxInflated, maxClockSkewSeconds: skew,
                                       maxSeriesPerReport: maxSeries, maxLabelsPerSeries: maxLabels,
                                       purgeIntervalSeconds: purgeInterval, guardSSIDs: ssids, logLevel: level)
        c.maxReportsPerBatch = maxBatch
        c.fleetMinReports = fleetMin
        c.tls = tls
        c.sessions = sessions
        c.otlp = otlp
        c.postgres = postgres
        return c
    }

    var validatorLimits: ReportValidator.Limits {
        var l = ReportValidator.Limits()
        l.maxSeries = maxSeriesPerReport
        l.maxLabelsPerSeries = maxLabelsPerSeries
        l.maxClockSkewMs = Int64(maxClockSkewSeconds) * 1000
        return l
    }
}
