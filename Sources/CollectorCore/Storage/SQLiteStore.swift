import Foundation
import GRDB
import TelemetryModel

/// The default, embedded backend: one SQLite file through GRDB, WAL mode. Migrations are append-only:
/// never edit a shipped one, add the next.
public final class SQLiteStore: TelemetryStore {
    private let pool: DatabasePool
    private let path: String

    public init(path: String) throws(CollectorError) {
        self.path = path
        do {
            var config = Configuration()
            config.foreignKeysEnabled = true
            config.busyMode = .timeout(5)
            config.prepareDatabase { db in
                // Erased and purged rows are overwritten, not left in free pages for recovery.
                try db.execute(sql: "PRAGMA secure_delete = ON")
                // A new database gets 16 KiB pages: report rows of 0.3–1.5 KB leave a fifth of 4 KiB pages empty,
                // a few per cent of 16 KiB ones. Runs before WAL mode is set; an existing database keeps its size.
                try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)")
            }
            pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
        } catch {
            throw CollectorError(.storage, "cannot open SQLite database \(path): \(error)", underlying: error)
        }
    }

    /// Page size of new databases (docs/storage.md).
    static let pageSize = 16_384

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-devices-tokens-reports-windows-audit") { db in
            try db.execute(sql: """
                CREATE TABLE devices (
                    id TEXT PRIMARY KEY NOT NULL,
                    created_at_ms INTEGER NOT NULL,
                    last_seq INTEGER,
                    last_report_at_ms INTEGER
                );
                CREATE TABLE tokens (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    token_hash BLOB NOT NULL UNIQUE,
                    role TEXT NOT NULL CHECK (role IN ('device', 'operator', 'admin')),
                    device_id TEXT REFERENCES devices(id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    created_at_ms INTEGER NOT NULL,
                    revoked_at_ms INTEGER
                );
                CREATE TABLE reports (
                    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    window_start_ms INTEGER NOT NULL,
                    window_end_ms INTEGER NOT NULL,
                    key_epoch INTEGER NOT NULL,
                    agent_version TEXT NOT NULL,
                    received_at_ms INTEGER NOT NULL,
                    series_count INTEGER NOT NULL,
                    PRIMARY KEY (device_id, seq)
                );
                CREATE INDEX reports_window_end ON reports(window_end_ms);
                CREATE TABLE series_windows (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device_id TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    data_class TEXT NOT NULL,
                    metric TEXT NOT NULL,
                    unit TEXT NOT NULL,
                    labels TEXT NOT NULL,
                    window_start_ms INTEGER NOT NULL,
                    window_end_ms INTEGER NOT NULL,
                    count INTEGER NOT NULL,
                    min REAL NOT NULL, max REAL NOT NULL, mean REAL NOT NULL, last REAL NOT NULL, sum REAL NOT NULL,
                    sketch TEXT,
                    FOREIGN KEY (device_id, seq) REFERENCES reports(device_id, seq) ON DELETE CASCADE
                );
                CREATE INDEX series_windows_query ON series_windows(device_id, metric, window_end_ms);
                CREATE INDEX series_windows_retention ON series_windows(data_class, window_end_ms);
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at_ms INTEGER NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    device_id TEXT,
                    reason TEXT,
                    outcome TEXT NOT NULL,
                    detail TEXT
                );
                CREATE INDEX audit_at ON audit(at_ms);
                """)
        }
        m.registerMigration("v2-device-settings") { db in
            try db.execute(sql: """
                CREATE TABLE device_settings (
                    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
                    version INTEGER NOT NULL,
                    settings TEXT NOT NULL,
                    set_at_ms INTEGER NOT NULL
                );
                """)
        }
        m.registerMigration("v3-compact-report-data") { db in try migrateToCompactStorage(db) }
        m.registerMigration("v4-fleet-windows") { db in
            try db.execute(sql: """
                CREATE TABLE fleet_windows (
                    metric TEXT NOT NULL,
                    bucket_seconds INTEGER NOT NULL,
                    bucket_start_ms INTEGER NOT NULL,
                    cohort TEXT NOT NULL,
                    unit TEXT NOT NULL,
                    reports INTEGER NOT NULL,
                    count INTEGER NOT NULL,
                    sum REAL NOT NULL,
                    min REAL NOT NULL,
                    max REAL NOT NULL,
                    sketch BLOB,
                    PRIMARY KEY (metric, bucket_seconds, bucket_start_ms, cohort)
                ) WITHOUT ROWID;
                CREATE INDEX fleet_windows_expiry ON fleet_windows(bucket_start_ms);
                """)
        }
        m.registerMigration("v5-dashboard-and-troubleshooting-sessions") { db in
            try db.execute(sql: """
                CREATE TABLE web_sessions (
                    id_hash BLOB PRIMARY KEY,
                    token_id INTEGER NOT NULL REFERENCES tokens(id),
                    csrf TEXT NOT NULL,
                    created_at_ms INTEGER NOT NULL,
                    expires_at_ms INTEGER NOT NULL,
                    kind TEXT NOT NULL DEFAULT 'session'
                ) WITHOUT ROWID;
                CREATE INDEX web_sessions_expiry ON web_sessions(expires_at_ms);
                CREATE INDEX report_data_recent ON report_data(window_end_ms);
                CREATE TABLE troubleshooting_sessions (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    actor TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    started_at_ms INTEGER NOT NULL,
                    ends_at_ms INTEGER NOT NULL,
                    stopped_at_ms INTEGER,
                    stopped_by TEXT,
                    end_recorded INTEGER NOT NULL DEFAULT 0,
                    interval_seconds INTEGER NOT NULL,
                    window_seconds INTEGER NOT NULL
                );
                CREATE INDEX troubleshooting_sessions_device ON troubleshooting_sessions(device_id, started_at_ms);
                CREATE INDEX troubleshooting_sessions_open ON troubleshooting_sessions(end_recorded, ends_at_ms);
                """)
        }
        // Two of report_data's three indexes were more than its reads need (dbstat after a load run: 2.5 bytes
        // a series of 28). `report_data_recent` served no query: the dashboard's newest-windows read takes
        // `report_data_expiry` once per class. `report_data_key` was unique on (device, class, window, seq),
        // a uniqueness `reports`' primary key already gives (a report's rows are written only when its
        // `reports` row is new); reads by device need (device, window) only.
        m.registerMigration("v6-slimmer-report-data-indexes") { db in
            try db.execute(sql: """
                DROP INDEX report_data_recent;
                DROP INDEX report_data_key;
                CREATE INDEX report_data_device ON report_data(device_id, window_end_ms);
                """)
        }
        return m
    }

    /// Schema 3: one row per report and data class with the series in a compact payload (``SeriesCodec``)
    /// instead of one row per series; `reports` keeps one small row per report for idempotency. The data
    /// rows are kilobytes: an ordinary rowid table stores them densely, where a WITHOUT ROWID table left
    /// two thirds of its pages unused (measured with dbstat under load). Every row
    /// of the old `series_windows` is carried over, report by report.
    static func migrateToCompactStorage(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE report_data (
                device_id TEXT NOT NULL,
                data_class TEXT NOT NULL,
                window_end_ms INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                window_start_ms INTEGER NOT NULL,
                key_epoch INTEGER NOT NULL,
                series_count INTEGER NOT NULL,
                codec INTEGER NOT NULL,
                payload BLOB NOT NULL
            );
            CREATE UNIQUE INDEX report_data_key ON report_data(device_id, data_class, window_end_ms, seq);
            CREATE INDEX report_data_expiry ON report_data(data_class, window_end_ms);
            CREATE TABLE reports_v3 (
                device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                window_end_ms INTEGER NOT NULL,
                agent_version TEXT NOT NULL,
                received_at_ms INTEGER NOT NULL,
                series_count INTEGER NOT NULL,
                PRIMARY KEY (device_id, seq)
            ) WITHOUT ROWID;
            INSERT INTO reports_v3 (device_id, seq, window_end_ms, agent_version, received_at_ms, series_count)
                SELECT device_id, seq, window_end_ms, agent_version, received_at_ms, series_count FROM reports;
            """)
        let reports = try Row.fetchAll(db, sql: "SELECT device_id, seq, window_start_ms, window_end_ms, key_epoch FROM reports")
        let insert = try db.makeStatement(sql: """
            INSERT INTO report_data (device_id, data_class, window_end_ms, seq, window_start_ms, key_epoch, series_count, codec, payload)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for r in reports {
            let device: String = r["device_id"], seq: Int64 = r["seq"]
            var byClass: [String: [Series]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM series_windows WHERE device_id = ? AND seq = ? ORDER BY id", arguments: [device, seq]) {
                let w = storedWindowV1(row)
                byClass[w.dataClass, default: []].append(Series(metric: w.metric, unit: w.unit, labels: w.labels, count: w.count, min: w.min, max: w.max,
                                                                 mean: w.mean, last: w.last, sum: w.sum, sketch: w.sketch))
            }
            for (c, series) in byClass {
                try insert.execute(arguments: [device, c, r["window_end_ms"] as Int64, seq, r["window_start_ms"] as Int64, r["key_epoch"] as Int64,
                                               series.count, SeriesCodec.currentCodec, Data(try SeriesCodec.compress(series))])
            }
        }
        try db.execute(sql: """
            DROP TABLE series_windows;
            DROP TABLE reports;
            ALTER TABLE reports_v3 RENAME TO reports;
            CREATE INDEX reports_window_end ON reports(window_end_ms);
            """)
    }

    // MARK: Fleet aggregates

    public func mergeFleet(_ cells: [FleetCell]) async throws {
        try await storage("writing fleet aggregates") {
            try await pool.write { db in
                let read = try db.makeStatement(sql: """
                    SELECT unit, reports, count, sum, min, max, sketch FROM fleet_windows
                    WHERE metric = ? AND bucket_seconds = ? AND bucket_start_ms = ? AND cohort = ?
                    """)
                let write = try db.makeStatement(sql: """
                    INSERT OR REPLACE INTO fleet_windows (metric, bucket_seconds, bucket_start_ms, cohort, unit, reports, count, sum, min, max, sketch)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for var cell in cells.sorted(by: { $0.key < $1.key }) {
                    let k = cell.key
                    if let row = try Row.fetchOne(read, arguments: [k.metric, k.bucketSeconds, k.bucketStartMs, k.cohort]) {
                        cell.merge(try Self.fleetCell(k, row))
                    }
                    try write.execute(arguments: [k.metric, k.bucketSeconds, k.bucketStartMs, k.cohort, cell.unit, cell.reports, cell.count,
                                                  cell.sum, cell.min, cell.max, cell.sketch.map { Data(SeriesCodec.encodeSketch($0)) }])
                }
            }
        }
    }

    static func fleetCell(_ key: FleetCell.Key, _ row: Row) throws -> FleetCell {
        let sketch: Data? = row["sketch"]
        return FleetCell(key: key, unit: row["unit"], reports: row["reports"], count: row["count"], sum: row["sum"], min: row["min"], max: row["max"],
                         sketch: try sketch.map { try SeriesCodec.decodeSketch([UInt8]($0)) })
    }

    public func fleet(metric: String, bucketSeconds: Int, fromMs: Int64, toMs: Int64, cutoffMs: Int64) async throws -> [FleetCell] {
        try await storage("reading fleet aggregates") {
            try await pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT * FROM fleet_windows WHERE metric = ? AND bucket_seconds = ? AND bucket_start_ms >= ? AND bucket_start_ms < ?
                    AND bucket_start_ms + bucket_seconds * 1000 > ? ORDER BY bucket_start_ms, cohort
                    """, arguments: [metric, bucketSeconds, fromMs, toMs, cutoffMs]).map { row in
                    try Self.fleetCell(FleetCell.Key(metric: metric, cohort: row["cohort"], bucketSeconds: bucketSeconds,
                                                     bucketStartMs: row["bucket_start_ms"]), row)
                }
            }
        }
    }

    // MARK: Remote settings (check-in)

    public func setSettings(_ settings: AgentSettings, device: String, nowMs: Int64) async throws -> UInt64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(settings), as: UTF8.self)
        return try await storage("storing device settings") {
            try await pool.write { db in
                let current = try Int64.fetchOne(db, sql: "SELECT version FROM device_settings WHERE device_id = ?", arguments: [device]) ?? 0
                try db.execute(sql: """
                    INSERT INTO device_settings (device_id, version, settings, set_at_ms) VALUES (?, ?, ?, ?)
                    ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, settings = excluded.settings, set_at_ms = excluded.set_at_ms
                    """, arguments: [device, current + 1, text, nowMs])
                return UInt64(current + 1)
            }
        }
    }

    public func settings(device: String) async throws -> AgentSettingsDocument? {
        // The closure returns Sendable values, so this is GRDB's async read: a `Row` result made the
        // compiler pick the blocking one, which held a cooperative thread while waiting for a reader that
        // a suspended task held — the collector hung under load (10,000 devices, one report per request).
        let found: (version: Int64, text: String)? = try await storage("reading device settings") {
            try await pool.read { db in
                try Row.fetchOne(db, sql: "SELECT version, settings FROM device_settings WHERE device_id = ?", arguments: [device])
                    .map { (version: $0["version"] as Int64, text: $0["settings"] as String) }
            }
        }
        guard let found else { return nil }
        let settings = try JSONDecoder().decode(AgentSettings.self, from: Data(found.text.utf8))
        return AgentSettingsDocument(device: device, version: UInt64(found.version), settings: settings)
    }

    /// Tables that hold a device's data; erase empties each of them for the device.
    public static let deviceDataTables = ["report_data", "reports", "troubleshooting_sessions"]

    private func storage<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as CollectorError { throw e } catch {
            throw CollectorError(.storage, "\(what) failed: \(error)", underlying: error)
        }
    }

    // MARK: Devices and tokens

    public func addDevice(_ id: String, nowMs: Int64) async throws -> Bool {
        try await storage("adding device") {
            try await pool.write { db in
                try db.execute(sql: "INSERT OR IGNORE INTO devices (id, created_at_ms) VALUES (?, ?)", arguments: [id, nowMs])
                return db.changesCount == 1
            }
        }
    }

    public func deviceExists(_ id: String) async throws -> Bool {
        try await storage("reading device") {
            try await pool.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM devices WHERE id = ?", arguments: [id]) ?? false }
        }
    }

    public func devices() async throws -> [DeviceSummary] {
        try await storage("listing devices") {
            try await pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT d.id, d.created_at_ms, d.last_seq, d.last_report_at_ms,
                           (SELECT COUNT(*) FROM reports r WHERE r.device_id = d.id) AS reports
                    FROM devices d ORDER BY d.id
                    """).map { row in
                    DeviceSummary(id: row["id"], createdAtMs: row["created_at_ms"], lastSeq: row["last_seq"],
                                  lastReportAtMs: row["last_report_at_ms"], reports: row["reports"])
                }
            }
        }
    }

    public func addToken(hash: [UInt8], role: TokenRole, deviceID: String?, name: String, nowMs: Int64) async throws -> TokenRecord {
        try await storage("adding token") {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO tokens (token_hash, role, device_id, name, created_at_ms) VALUES (?, ?, ?, ?, ?)",
                               arguments: [Data(hash), role.rawValue, deviceID, name, nowMs])
                return TokenRecord(id: db.lastInsertedRowID, role: role, deviceID: deviceID, name: name, createdAtMs: nowMs, revokedAtMs: nil)
            }
        }
    }

    private static func tokenRecord(_ row: Row) -> TokenRecord {
        TokenRecord(id: row["id"], role: TokenRole(rawValue: row["role"]) ?? .device, deviceID: row["device_id"],
                    name: row["name"], createdAtMs: row["created_at_ms"], revokedAtMs: row["revoked_at_ms"])
    }

    public func token(hash: [UInt8]) async throws -> (record: TokenRecord, hash: [UInt8])? {
        try await storage("reading token") {
            try await pool.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE token_hash = ?", arguments: [Data(hash)]) else { return nil }
                let stored: Data = row["token_hash"]
                return (Self.tokenRecord(row), Array(stored))
            }
        }
    }

    public func token(id: Int64) async throws -> TokenRecord? {
        try await storage("reading token") {
            try await pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE id = ?", arguments: [id]).map(Self.tokenRecord) }
        }
    }

    public func tokens() async throws -> [TokenRecord] {
        try await storage("listing tokens") {
            try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY id").map(Self.tokenRecord) }
        }
    }

    public func revokeToken(id: Int64, nowMs: Int64) async throws -> Bool {
        try await storage("revoking token") {
            try await pool.write { db in
                try db.execute(sql: "UPDATE tokens SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL", arguments: [nowMs, id])
                let revoked = db.changesCount == 1
                try db.execute(sql: "DELETE FROM web_sessions WHERE token_id = ?", arguments: [id])  // its dashboard logins end with it
                return revoked
            }
        }
    }

    // MARK: Reports

    /// Group commit: concurrent requests' reports share transactions (see ``GroupCommit``).
    private let commits = GroupCommit()

    public func ingest(_ reports: [(report: Report, classes: [DataClass])], receivedAtMs: Int64) async throws -> [IngestOutcome] {
        guard !reports.isEmpty else { return [] }
        return try await commits.submit(reports.map { ($0.report, $0.classes, receivedAtMs) }) { batch in
            try await self.write(batch)
        }
    }

    /// Stores `batch` in one transaction; one outcome per entry.
    private func write(_ batch: [(report: Report, classes: [DataClass], receivedAtMs: Int64)]) async throws -> [IngestOutcome] {
        let reports = batch.map { ($0.report, $0.classes) }
        // Encoded before the write transaction: the single writer holds the lock for the inserts only.
        let encoded = try reports.map { (report, classes) in
            try ReportRows.payloads(report, classes).map { ($0.dataClass, $0.seriesCount, Data($0.payload)) }
        }
        return try await storage("storing reports") {
            try await pool.write { db in
                let head = try db.makeStatement(sql: """
                    INSERT OR IGNORE INTO reports (device_id, seq, window_end_ms, agent_version, received_at_ms, series_count) VALUES (?, ?, ?, ?, ?, ?)
                    """)
                let data = try db.makeStatement(sql: """
                    INSERT INTO report_data (device_id, data_class, window_end_ms, seq, window_start_ms, key_epoch, series_count, codec, payload)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                let device = try db.makeStatement(sql: "UPDATE devices SET last_seq = MAX(COALESCE(last_seq, 0), ?), last_report_at_ms = ? WHERE id = ?")
                var outcomes: [IngestOutcome] = []
                for (((report, _), payloads), receivedAtMs) in zip(zip(reports, encoded), batch.map(\.receivedAtMs)) {
                    try head.execute(arguments: [report.device, Int64(report.seq), report.windowEndMs, report.agentVersion, receivedAtMs, report.series.count])
                    guard db.changesCount == 1 else {
                        outcomes.append(.duplicate)
                        continue
                    }
                    for (c, n, payload) in payloads {
                        try data.execute(arguments: [report.device, c, report.windowEndMs, Int64(report.seq), report.windowStartMs,
                                                     Int64(report.keyEpoch), n, SeriesCodec.currentCodec, payload])
                    }
                    try device.execute(arguments: [Int64(report.seq), receivedAtMs, report.device])
                    outcomes.append(.stored(series: report.series.count))
                }
                return outcomes
            }
        }
    }

    /// `(data_class = ? AND window_end_ms >= ?) OR …` for every class; rows of other classes never match.
    static func retentionFilter(_ cutoffs: [DataClass: Int64]) -> (sql: String, arguments: [any DatabaseValueConvertible]) {
        let sorted = cutoffs.sorted { $0.key < $1.key }
        guard !sorted.isEmpty else { return ("0", []) }
        let sql = sorted.map { _ in "(data_class = ? AND window_end_ms >= ?)" }.joined(separator: " OR ")
        return ("(\(sql))", sorted.flatMap { [$0.key.rawValue, $0.value] as [any DatabaseValueConvertible] })
    }

    /// A row of schema 1's `series_windows` (read by the migration only).
    static func storedWindowV1(_ row: Row) -> StoredWindow {
        let labelsText: String = row["labels"]
        let labels = (try? JSONDecoder().decode([String: String].self, from: Data(labelsText.utf8))) ?? [:]
        let sketchText: String? = row["sketch"]
        let sketch = sketchText.flatMap { try? JSONDecoder().decode(QuantileSketch.self, from: Data($0.utf8)) }
        return StoredWindow(deviceID: row["device_id"], seq: row["seq"], dataClass: row["data_class"], metric: row["metric"],
                            unit: row["unit"], labels: labels, windowStartMs: row["window_start_ms"], windowEndMs: row["window_end_ms"],
                            count: row["count"], min: row["min"], max: row["max"], mean: row["mean"], last: row["last"],
                            sum: row["sum"], sketch: sketch)
    }

    public func windows(device: String, metric: String?, fromMs: Int64, toMs: Int64, cutoffs: [DataClass: Int64],
                        limit: Int) async throws -> [StoredWindow] {
        let filter = Self.retentionFilter(cutoffs)
        let sql = "SELECT * FROM report_data WHERE device_id = ? AND window_end_ms > ? AND window_start_ms < ? AND \(filter.sql)"
        let arguments = StatementArguments([device, fromMs, toMs] + filter.arguments) ?? StatementArguments()
        let out = try await storage("reading series") {
            try await pool.read { db in
                var out: [StoredWindow] = []
                for row in try Row.fetchAll(db, sql: sql, arguments: arguments) {
                    let payload: Data = row["payload"]
                    out += try ReportRows.windows(ReportRows.Row(deviceID: device, seq: row["seq"], dataClass: row["data_class"],
                                                                 windowStartMs: row["window_start_ms"], windowEndMs: row["window_end_ms"],
                                                                 codec: row["codec"], seriesCount: row["series_count"], payload: [UInt8](payload)),
                                                  where: { metric == nil || $0 == metric })
                }
                return out
            }
        }
        return ReportRows.ordered(out, limit: limit)
    }

    // MARK: Retention, erasure, audit

    public func purge(cutoffs: [DataClass: Int64], dryRun: Bool) async throws -> [String: Int] {
        let counts = try await purgeRows(cutoffs: cutoffs, dryRun: dryRun)
        if !dryRun { try await storage("checkpointing the WAL after purge") { try await truncateWAL() } }
        return counts
    }

    private func purgeRows(cutoffs: [DataClass: Int64], dryRun: Bool) async throws -> [String: Int] {
        try await storage("purging") {
            try await pool.write { db in
                var counts: [String: Int] = [:]
                for (c, cutoff) in cutoffs.sorted(by: { $0.key < $1.key }) where c != .audit && c != .fleet {
                    // Counted in series windows, as before schema 3.
                    counts[c.rawValue] = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(series_count), 0) FROM report_data WHERE data_class = ? AND window_end_ms < ?",
                                                          arguments: [c.rawValue, cutoff]) ?? 0
                    if !dryRun {
                        try db.execute(sql: "DELETE FROM report_data WHERE data_class = ? AND window_end_ms < ?", arguments: [c.rawValue, cutoff])
                    }
                }
                // A report row outlives its windows only until the longest telemetry class has expired it.
                let telemetry = cutoffs.filter { $0.key != .audit && $0.key != .fleet }.values
                if let oldest = telemetry.min() {
                    counts["reports"] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM reports WHERE window_end_ms < ?", arguments: [oldest]) ?? 0
                    if !dryRun { try db.execute(sql: "DELETE FROM reports WHERE window_end_ms < ?", arguments: [oldest]) }
                }
                if let fleetCutoff = cutoffs[.fleet] {
                    counts["fleet"] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM fleet_windows WHERE bucket_start_ms + bucket_seconds * 1000 < ?",
                                                       arguments: [fleetCutoff]) ?? 0
                    if !dryRun { try db.execute(sql: "DELETE FROM fleet_windows WHERE bucket_start_ms + bucket_seconds * 1000 < ?", arguments: [fleetCutoff]) }
                }
                if let auditCutoff = cutoffs[.audit] {
                    counts["audit"] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit WHERE at_ms < ?", arguments: [auditCutoff]) ?? 0
                    if !dryRun { try db.execute(sql: "DELETE FROM audit WHERE at_ms < ?", arguments: [auditCutoff]) }
                }
                if !dryRun {
                    // A troubleshooting session is kept as long as the data it produced (expired dashboard logins go at each login).
                    if let cutoff = cutoffs[.troubleshooting] {
                        try db.execute(sql: "DELETE FROM troubleshooting_sessions WHERE end_recorded = 1 AND ends_at_ms < ? AND COALESCE(stopped_at_ms, ends_at_ms) < ?",
                                       arguments: [cutoff, cutoff])
                    }
                }
                return counts
            }
        }
    }

    /// Moves the WAL into the database and empties it, so deleted rows do not linger in the WAL file.
    private func truncateWAL() async throws {
        try await pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
    }

    public func erase(device: String) async throws -> [String: Int] {
        let counts = try await storage("erasing device data") {
            try await pool.write { db in
                // Counted as series windows and reports, as the API has always answered.
                var counts: [String: Int] = [:]
                counts["series_windows"] = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(series_count), 0) FROM report_data WHERE device_id = ?",
                                                            arguments: [device]) ?? 0
                for table in Self.deviceDataTables {
                    try db.execute(sql: "DELETE FROM \(table) WHERE device_id = ?", arguments: [device])
                    if table == "reports" { counts["reports"] = db.changesCount }
                }
                try db.execute(sql: "UPDATE devices SET last_seq = NULL, last_report_at_ms = NULL WHERE id = ?", arguments: [device])
                return counts
            }
        }
        try await storage("checkpointing the WAL after erasure") { try await truncateWAL() }
        return counts
    }

    // MARK: Dashboard

    public func latestWindows(metrics: Set<String>, sinceMs: Int64, cutoffs: [DataClass: Int64]) async throws -> [StoredWindow] {
        // Only the classes the metrics live in: each row read is a payload to decode.
        let classes = Set(metrics.compactMap { MetricCatalog.descriptor(named: $0)?.dataClass })
        let filter = Self.retentionFilter(cutoffs.filter { classes.contains($0.key) })
        // SQLite returns the other columns of the row that holds MAX() (a documented bare-column rule).
        let sql = """
            SELECT device_id, seq, data_class, window_start_ms, MAX(window_end_ms) AS window_end_ms, codec, series_count, payload
            FROM report_data WHERE window_end_ms > ? AND \(filter.sql) GROUP BY device_id, data_class
            """
        let arguments = StatementArguments([sinceMs] + filter.arguments) ?? StatementArguments()
        return try await storage("reading the newest windows") {
            try await pool.read { db in
                var out: [StoredWindow] = []
                let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
                while let row = try rows.next() {
                    let payload: Data = row["payload"]
                    out += try ReportRows.windows(ReportRows.Row(deviceID: row["device_id"], seq: row["seq"], dataClass: row["data_class"],
                                                                 windowStartMs: row["window_start_ms"], windowEndMs: row["window_end_ms"],
                                                                 codec: row["codec"], seriesCount: row["series_count"], payload: [UInt8](payload)),
                                                  where: { metrics.contains($0) })
                }
                return out
            }
        }
    }

    public func createWebSession(_ session: WebSession) async throws {
        try await storage("starting a dashboard session") {
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM web_sessions WHERE expires_at_ms < ?", arguments: [session.createdAtMs])
                try db.execute(sql: "INSERT INTO web_sessions (id_hash, token_id, csrf, created_at_ms, expires_at_ms, kind) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [Data(session.idHash), session.tokenID, session.csrf, session.createdAtMs, session.expiresAtMs,
                                           session.isLoginLink ? "login_link" : "session"])
            }
        }
    }

    public func webSession(idHash: [UInt8], nowMs: Int64) async throws -> WebSession? {
        try await storage("reading a dashboard session") {
            try await pool.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM web_sessions WHERE id_hash = ? AND expires_at_ms > ?",
                                                 arguments: [Data(idHash), nowMs]) else { return nil }
                return WebSession(idHash: idHash, tokenID: row["token_id"], csrf: row["csrf"],
                                  createdAtMs: row["created_at_ms"], expiresAtMs: row["expires_at_ms"], isLoginLink: (row["kind"] as String) == "login_link")
            }
        }
    }

    public func deleteWebSession(idHash: [UInt8]) async throws -> Bool {
        try await storage("ending a dashboard session") {
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM web_sessions WHERE id_hash = ?", arguments: [Data(idHash)])
                return db.changesCount == 1
            }
        }
    }

    // MARK: Troubleshooting sessions

    private static func session(_ row: Row) -> TroubleshootingSession {
        TroubleshootingSession(id: row["id"], deviceID: row["device_id"], actor: row["actor"], reason: row["reason"],
                               startedAtMs: row["started_at_ms"], endsAtMs: row["ends_at_ms"], stoppedAtMs: row["stopped_at_ms"],
                               stoppedBy: row["stopped_by"], intervalSeconds: row["interval_seconds"], windowSeconds: row["window_seconds"])
    }

    private static let runningSQL = "device_id = ? AND started_at_ms <= ? AND ends_at_ms > ? AND stopped_at_ms IS NULL"

    public func startSession(device: String, actor: String, reason: String, startMs: Int64, endMs: Int64,
                             intervalSeconds: Int, windowSeconds: Int) async throws -> TroubleshootingSession? {
        try await storage("starting a troubleshooting session") {
            try await pool.write { db in
                // One at a time per device, checked inside the write transaction (SQLite has one writer).
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM troubleshooting_sessions WHERE \(Self.runningSQL)", arguments: [device, startMs, startMs]) == true {
                    return nil
                }
                try db.execute(sql: """
                    INSERT INTO troubleshooting_sessions (device_id, actor, reason, started_at_ms, ends_at_ms, interval_seconds, window_seconds)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [device, actor, reason, startMs, endMs, intervalSeconds, windowSeconds])
                return TroubleshootingSession(id: db.lastInsertedRowID, deviceID: device, actor: actor, reason: reason, startedAtMs: startMs,
                                              endsAtMs: endMs, stoppedAtMs: nil, stoppedBy: nil, intervalSeconds: intervalSeconds, windowSeconds: windowSeconds)
            }
        }
    }

    public func stopSession(device: String, id: Int64, actor: String, nowMs: Int64) async throws -> Bool {
        try await storage("stopping a troubleshooting session") {
            try await pool.write { db in
                try db.execute(sql: "UPDATE troubleshooting_sessions SET stopped_at_ms = ?, stopped_by = ?, end_recorded = 1 WHERE id = ? AND \(Self.runningSQL)",
                               arguments: [nowMs, actor, id, device, nowMs, nowMs])
                return db.changesCount == 1
            }
        }
    }

    public func sessions(device: String?, limit: Int) async throws -> [TroubleshootingSession] {
        try await storage("listing troubleshooting sessions") {
            try await pool.read { db in
                if let device {
                    return try Row.fetchAll(db, sql: "SELECT * FROM troubleshooting_sessions WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                                            arguments: [device, limit]).map(Self.session)
                }
                return try Row.fetchAll(db, sql: "SELECT * FROM troubleshooting_sessions ORDER BY id DESC LIMIT ?", arguments: [limit]).map(Self.session)
            }
        }
    }

    public func runningSession(device: String, nowMs: Int64) async throws -> TroubleshootingSession? {
        try await storage("reading the running troubleshooting session") {
            try await pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM troubleshooting_sessions WHERE \(Self.runningSQL) ORDER BY id DESC LIMIT 1",
                                 arguments: [device, nowMs, nowMs]).map(Self.session)
            }
        }
    }

    public func takeExpiredSessions(nowMs: Int64) async throws -> [TroubleshootingSession] {
        try await storage("recording ended troubleshooting sessions") {
            try await pool.write { db in
                let ended = try Row.fetchAll(db, sql: "SELECT * FROM troubleshooting_sessions WHERE end_recorded = 0 AND ends_at_ms <= ? LIMIT 1000",
                                             arguments: [nowMs]).map(Self.session)
                for s in ended { try db.execute(sql: "UPDATE troubleshooting_sessions SET end_recorded = 1 WHERE id = ?", arguments: [s.id]) }
                return ended
            }
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await storage("writing audit entry") {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO audit (at_ms, actor, action, device_id, reason, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [entry.atMs, entry.actor, entry.action, entry.deviceID, entry.reason, entry.outcome, entry.detail])
            }
        }
    }

    public func audit(device: String?, sinceMs: Int64, limit: Int) async throws -> [AuditEntry] {
        try await storage("reading audit trail") {
            try await pool.read { db in
                var sql = "SELECT * FROM audit WHERE at_ms >= ?"
                var args: [any DatabaseValueConvertible] = [sinceMs]
                if let device {
                    sql += " AND device_id = ?"
                    args.append(device)
                }
                sql += " ORDER BY id DESC LIMIT ?"
                args.append(limit)
                return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args) ?? StatementArguments()).map { row in
                    AuditEntry(id: row["id"], atMs: row["at_ms"], actor: row["actor"], action: row["action"], deviceID: row["device_id"],
                               reason: row["reason"], outcome: row["outcome"], detail: row["detail"])
                }
            }
        }
    }

    /// The database's pages as of its latest commit (`page_count` × `page_size`: pages still in the WAL
    /// included, as they will be in the file after a checkpoint), and the WAL file's size.
    public func diskUsage() async throws -> DiskUsage {
        func bytes(_ p: String) -> Int64 { ((try? FileManager.default.attributesOfItem(atPath: p)[.size]) as? NSNumber)?.int64Value ?? 0 }
        let pages = try await storage("measuring the database") {
            try await pool.read { db in
                (try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0) * (try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0)
            }
        }
        return DiskUsage(location: path, dataBytes: pages, logBytes: bytes(path + "-wal"))
    }
}
