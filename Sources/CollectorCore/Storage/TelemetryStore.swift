import Foundation
import TelemetryModel

/// Who may do what. Device tokens write their own device's reports; operators read; admins export,
/// erase and manage tokens (and read).
public enum TokenRole: String, Sendable, Codable, CaseIterable {
    case device, operator_ = "operator", admin
}

public struct TokenRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var role: TokenRole
    /// The device a device token writes for; nil for operator and admin tokens.
    public var deviceID: String?
    public var name: String
    public var createdAtMs: Int64
    public var revokedAtMs: Int64?

    enum CodingKeys: String, CodingKey {
        case id, role, name
        case deviceID = "device_id", createdAtMs = "created_at_ms", revokedAtMs = "revoked_at_ms"
    }
}

public struct DeviceSummary: Sendable, Equatable, Codable {
    public var id: String
    public var createdAtMs: Int64
    public var lastSeq: Int64?
    public var lastReportAtMs: Int64?
    public var reports: Int

    enum CodingKeys: String, CodingKey {
        case id, reports
        case createdAtMs = "created_at_ms", lastSeq = "last_seq", lastReportAtMs = "last_report_at_ms"
    }
}

/// One stored series window.
public struct StoredWindow: Sendable, Equatable, Codable {
    public var deviceID: String
    public var seq: Int64
    public var dataClass: String
    public var metric: String
    public var unit: String
    public var labels: [String: String]
    public var windowStartMs: Int64
    public var windowEndMs: Int64
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    public var last: Double
    public var sum: Double
    public var sketch: QuantileSketch?

    enum CodingKeys: String, CodingKey {
        case seq, metric, unit, labels, count, min, max, mean, last, sum, sketch
        case deviceID = "device_id", dataClass = "data_class", windowStartMs = "window_start_ms", windowEndMs = "window_end_ms"
    }
}

extension Sequence where Element == StoredWindow {
    /// The newest window that spans at least half the longest one given: what "the latest window"
    /// should mean in a summary. An agent that stops ships its partial window, often a few milliseconds
    /// long with rates from one short interval, which would otherwise stand for the device's latest state.
    public func newestFullLength() -> StoredWindow? {
        let windows = Array(self)
        guard let longest = windows.map({ $0.windowEndMs - $0.windowStartMs }).max() else { return nil }
        return windows.filter { ($0.windowEndMs - $0.windowStartMs) * 2 >= longest }.max { $0.windowEndMs < $1.windowEndMs }
    }
}

public struct AuditEntry: Sendable, Equatable, Codable {
    public var id: Int64?
    public var atMs: Int64
    /// `role:name` of the token used, or `cli:<user>` for the command line.
    public var actor: String
    public var action: String
    public var deviceID: String?
    /// The stated reason or ticket (`X-Meetpunt-Reason` header, `--reason`).
    public var reason: String?
    /// `ok` or `denied`.
    public var outcome: String
    public var detail: String?

    enum CodingKeys: String, CodingKey {
        case id, actor, action, reason, outcome, detail
        case atMs = "at_ms", deviceID = "device_id"
    }

    public init(id: Int64? = nil, atMs: Int64, actor: String, action: String, deviceID: String?, reason: String?,
                outcome: String, detail: String? = nil) {
        self.id = id
        self.atMs = atMs
        self.actor = actor
        self.action = action
        self.deviceID = deviceID
        self.reason = reason
        self.outcome = outcome
        self.detail = detail
    }
}

/// A label set as JSON with sorted keys: one spelling per label set, for storage keys and exports.
public func canonicalLabelsJSON(_ labels: [String: String]) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(labels)) ?? Data("{}".utf8), as: UTF8.self)
}

public enum IngestOutcome: Sendable, Equatable {
    case stored(series: Int)
    case duplicate
}

/// Storage behind one protocol so PostgreSQL can join SQLite; no backend-specific SQL outside a backend.
/// Every read takes the retention cutoffs: expired rows are never returned, even before a purge.
public protocol TelemetryStore: Sendable {
    func addDevice(_ id: String, nowMs: Int64) async throws -> Bool
    func deviceExists(_ id: String) async throws -> Bool
    func devices() async throws -> [DeviceSummary]

    func addToken(hash: [UInt8], role: TokenRole, deviceID: String?, name: String, nowMs: Int64) async throws -> TokenRecord
    func token(hash: [UInt8]) async throws -> (record: TokenRecord, hash: [UInt8])?
    func token(id: Int64) async throws -> TokenRecord?
    func tokens() async throws -> [TokenRecord]
    func revokeToken(id: Int64, nowMs: Int64) async throws -> Bool

    /// Stores `reports` in one transaction (each with its series' classes), or nothing; a (device, seq)
    /// already stored, or twice in the list, is a duplicate. One outcome per report, in order.
    func ingest(_ reports: [(report: Report, classes: [DataClass])], receivedAtMs: Int64) async throws -> [IngestOutcome]
    func windows(device: String, metric: String?, fromMs: Int64, toMs: Int64, cutoffs: [DataClass: Int64], limit: Int) async throws -> [StoredWindow]

    /// Deletes expired rows per class; with `dryRun`, counts them only.
    func purge(cutoffs: [DataClass: Int64], dryRun: Bool) async throws -> [String: Int]
    /// Deletes every data row of `device` (windows, reports; rollups and sessions when they exist).
    func erase(device: String) async throws -> [String: Int]

    /// Adds `cells` to the stored fleet aggregates (merging with what is there), in one transaction.
    func mergeFleet(_ cells: [FleetCell]) async throws
    /// The fleet cells of `metric` at one bucket size whose bucket starts in [from, to) and has not expired.
    func fleet(metric: String, bucketSeconds: Int, fromMs: Int64, toMs: Int64, cutoffMs: Int64) async throws -> [FleetCell]

    /// Stores the desired remote settings of `device` and returns their new version (1, 2, …).
    func setSettings(_ settings: AgentSettings, device: String, nowMs: Int64) async throws -> UInt64
    /// The desired remote settings of `device`, or nil when none were ever set.
    func settings(device: String) async throws -> AgentSettingsDocument?

    func appendAudit(_ entry: AuditEntry) async throws
    func audit(device: String?, sinceMs: Int64, limit: Int) async throws -> [AuditEntry]

    /// The newest stored window of each device, data class and series of `metrics` whose window ended
    /// after `sinceMs` and has not expired (the dashboard's fleet tables: one report row per device and
    /// class is read, whatever the device's history).
    func latestWindows(metrics: Set<String>, sinceMs: Int64, cutoffs: [DataClass: Int64]) async throws -> [StoredWindow]

    /// Dashboard sessions live in the database, so any collector process behind a load balancer knows them.
    func createWebSession(_ session: WebSession) async throws
    /// The session with this id hash if it has not expired at `nowMs`.
    func webSession(idHash: [UInt8], nowMs: Int64) async throws -> WebSession?
    /// Deletes the session or login link; false when it was not there (a link used twice).
    @discardableResult
    func deleteWebSession(idHash: [UInt8]) async throws -> Bool

    /// Starts a troubleshooting session unless one is running for the device (then nil).
    func startSession(device: String, actor: String, reason: String, startMs: Int64, endMs: Int64,
                      intervalSeconds: Int, windowSeconds: Int) async throws -> TroubleshootingSession?
    /// Ends the running session `id` of `device` now; false when it was not running.
    func stopSession(device: String, id: Int64, actor: String, nowMs: Int64) async throws -> Bool
    /// The device's sessions, newest first.
    func sessions(device: String?, limit: Int) async throws -> [TroubleshootingSession]
    /// The session of `device` running at `nowMs`, if any.
    func runningSession(device: String, nowMs: Int64) async throws -> TroubleshootingSession?
    /// Sessions that reached their end time without being stopped and whose end was not yet recorded:
    /// marks them and returns them, once, whichever collector process asks (for the audit trail).
    func takeExpiredSessions(nowMs: Int64) async throws -> [TroubleshootingSession]

    /// Bytes the database takes on disk (indexes included), for sizing and the load test.
    func diskUsage() async throws -> DiskUsage
}

/// What a database takes on disk: its data (tables, indexes, TOAST) and its write-ahead log where that
/// belongs to this database alone (SQLite's `-wal` file; PostgreSQL's WAL is the cluster's, so 0).
public struct DiskUsage: Sendable, Equatable {
    /// The file or `postgresql://user@host:port/database`.
    public var location: String
    /// The database's size: SQLite's pages as of the latest commit (WAL frames included), PostgreSQL's
    /// `pg_database_size`.
    public var dataBytes: Int64
    /// SQLite's WAL file (reused after each checkpoint, so not growth); 0 on PostgreSQL.
    public var logBytes: Int64
    public init(location: String, dataBytes: Int64, logBytes: Int64) {
        self.location = location
        self.dataBytes = dataBytes
        self.logBytes = logBytes
    }
    public var totalBytes: Int64 { dataBytes + logBytes }
}

/// An operator's request for high-resolution data from one device for a while.
public struct TroubleshootingSession: Sendable, Equatable, Codable {
    public var id: Int64
    public var deviceID: String
    public var actor: String
    public var reason: String
    public var startedAtMs: Int64
    public var endsAtMs: Int64
    public var stoppedAtMs: Int64?
    public var stoppedBy: String?
    public var intervalSeconds: Int
    public var windowSeconds: Int

    public init(id: Int64, deviceID: String, actor: String, reason: String, startedAtMs: Int64, endsAtMs: Int64,
                stoppedAtMs: Int64?, stoppedBy: String?, intervalSeconds: Int, windowSeconds: Int) {
        self.id = id
        self.deviceID = deviceID
        self.actor = actor
        self.reason = reason
        self.startedAtMs = startedAtMs
        self.endsAtMs = endsAtMs
        self.stoppedAtMs = stoppedAtMs
        self.stoppedBy = stoppedBy
        self.intervalSeconds = intervalSeconds
        self.windowSeconds = windowSeconds
    }

    /// When it ended or will end.
    public var endMs: Int64 { Swift.min(endsAtMs, stoppedAtMs ?? Int64.max) }
    public func isRunning(at nowMs: Int64) -> Bool { startedAtMs <= nowMs && nowMs < endMs }

    enum CodingKeys: String, CodingKey {
        case id, actor, reason
        case deviceID = "device", startedAtMs = "started_at_ms", endsAtMs = "ends_at_ms", stoppedAtMs = "stopped_at_ms",
             stoppedBy = "stopped_by", intervalSeconds = "interval_seconds", windowSeconds = "window_seconds"
    }
}

/// A dashboard login: the browser holds the random id in an HttpOnly cookie, the database its SHA-256.
/// It acts for one operator or admin token (revoking the token ends the session) and carries the CSRF
/// token every form of the session must send back.
public struct WebSession: Sendable, Equatable {
    public var idHash: [UInt8]
    public var tokenID: Int64
    public var csrf: String
    public var createdAtMs: Int64
    public var expiresAtMs: Int64
    /// A one-time login link (`meetpunt-collector dashboard login-link`), not a session: it is exchanged
    /// for a session once, and never accepted as a session cookie.
    public var isLoginLink: Bool

    public init(idHash: [UInt8], tokenID: Int64, csrf: String, createdAtMs: Int64, expiresAtMs: Int64, isLoginLink: Bool = false) {
        self.idHash = idHash
        self.tokenID = tokenID
        self.csrf = csrf
        self.createdAtMs = createdAtMs
        self.expiresAtMs = expiresAtMs
        self.isLoginLink = isLoginLink
    }
}
