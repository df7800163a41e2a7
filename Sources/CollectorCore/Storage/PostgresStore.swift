import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TelemetryModel

/// The backend for a fleet: PostgreSQL 15+ through postgres-nio's connection pool. Same rows as SQLite
/// (one per report and data class, ``ReportRows``), so both answer alike; ``StoreConformanceTests`` runs
/// the same suite on both.
///
/// `report_data` is partitioned by data class, then by UTC day of `window_end_ms`: the purge drops a
/// class's whole day partitions once they have expired (detached concurrently, then dropped, so writers
/// are not held), and deletes only what has expired inside the one partition that straddles the cut-off.
/// Reads filter on the cut-offs too, so nothing expired is returned before the purge ran. Partitions for
/// today and tomorrow are made at start and by every purge, so the midnight rollover does not wait on
/// a lock of the class table behind readers; a report of another day makes its own when it arrives.
///
/// Everything several collector processes share lives in the database: dedupe on (device, seq), sessions,
/// dashboard logins, settings versions. Several `serve` processes may use one database behind any load
/// balancer.
///
/// The connection pool runs in ``run()``; call it in a task that outlives every other call (the
/// collector's ``StoreHandle`` does), then ``migrate()`` once.
public final class PostgresStore: TelemetryStore {
    let client: PostgresClient
    private let logger: Logger
    /// One connection made before the pool starts, so a wrong password or a closed port is reported at
    /// once with PostgreSQL's reason instead of as a pool that never gets a connection.
    private let probeConfiguration: PostgresConnection.Configuration
    private let settings: CollectorConfiguration.PostgresSettings
    private let commits = GroupCommit()
    /// Day partitions known to exist (`report_data_<class>_<yyyymmdd>`): made once per process.
    private let knownPartitions = Mutex<Set<String>>([])

    public init(settings: CollectorConfiguration.PostgresSettings, logger: Logger) throws(CollectorError) {
        var password: String?
        if let file = settings.passwordFile {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                password = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            } catch {
                // The error names the file, never what is in it.
                throw CollectorError(.configuration, "storage.postgres.password_file \(file): cannot read: \(error.localizedDescription)")
            }
        }
        let tls: PostgresClient.Configuration.TLS
        let probeTLS: PostgresConnection.Configuration.TLS
        do {
            switch settings.tls {
            case "disable": (tls, probeTLS) = (.disable, .disable)
            case "require": (tls, probeTLS) = (.require(.makeClientConfiguration()), .require(try NIOSSLContext(configuration: .makeClientConfiguration())))
            default:
                // As libpq's sslmode=prefer: encrypted when the server offers TLS, its certificate not verified
                // (a stock server's is self-signed). `require` verifies.
                var unverified = TLSConfiguration.makeClientConfiguration()
                unverified.certificateVerification = .none
                (tls, probeTLS) = (.prefer(unverified), .prefer(try NIOSSLContext(configuration: unverified)))
            }
        } catch {
            throw CollectorError(.configuration, "storage.postgres.tls \(settings.tls): cannot set up TLS: \(error)")
        }
        probeConfiguration = PostgresConnection.Configuration(host: settings.host, port: settings.port, username: settings.user, password: password,
                                                              database: settings.database, tls: probeTLS)
        self.settings = settings
        var configuration = PostgresClient.Configuration(host: settings.host, port: settings.port, username: settings.user,
                                                         password: password, database: settings.database, tls: tls)
        configuration.options.maximumConnections = settings.maxConnections
        configuration.options.connectTimeout = .seconds(10)
        self.logger = logger
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// Connects once and disconnects: an error names the server and PostgreSQL's reason (never the password).
    public func probe() async throws {
        do {
            let connection = try await PostgresConnection.connect(configuration: probeConfiguration, id: 0, logger: logger)
            try await connection.close()
        } catch {
            throw CollectorError(.storage, "cannot connect to PostgreSQL at \(settings): \(Self.describe(error))", underlying: error)
        }
    }

    /// Runs the connection pool until the calling task is cancelled.
    public func run() async { await client.run() }

    // MARK: Schema

    /// Append-only: never edit a shipped migration, add the next. Each is a list of statements run in one
    /// transaction with the others not yet applied, under an advisory lock, so collectors may start together.
    static let migrations: [(name: String, statements: [String])] = [
        ("v1-schema-of-collector-0.4", [
            """
            CREATE TABLE devices (
                id text PRIMARY KEY,
                created_at_ms bigint NOT NULL,
                last_seq bigint,
                last_report_at_ms bigint
            )
            """,
            """
            CREATE TABLE tokens (
                id bigserial PRIMARY KEY,
                token_hash bytea NOT NULL UNIQUE,
                role text NOT NULL CHECK (role IN ('device', 'operator', 'admin')),
                device_id text REFERENCES devices(id) ON DELETE CASCADE,
                name text NOT NULL,
                created_at_ms bigint NOT NULL,
                revoked_at_ms bigint
            )
            """,
            // Dedupe on (device, seq) across every collector process; one small row per report.
            """
            CREATE TABLE reports (
                device_id text NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
                seq bigint NOT NULL,
                window_end_ms bigint NOT NULL,
                agent_version text NOT NULL,
                received_at_ms bigint NOT NULL,
                series_count integer NOT NULL,
                PRIMARY KEY (device_id, seq)
            )
            """,
            "CREATE INDEX reports_window_end ON reports (window_end_ms)",
            """
            CREATE TABLE report_data (
                device_id text NOT NULL,
                data_class text NOT NULL,
                window_end_ms bigint NOT NULL,
                seq bigint NOT NULL,
                window_start_ms bigint NOT NULL,
                key_epoch bigint NOT NULL,
                series_count integer NOT NULL,
                codec smallint NOT NULL,
                payload bytea NOT NULL
            ) PARTITION BY LIST (data_class)
            """,
            "CREATE INDEX report_data_device ON report_data (device_id, window_end_ms)",
            "CREATE INDEX report_data_recent ON report_data (window_end_ms)",
            """
            CREATE TABLE device_settings (
                device_id text PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
                version bigint NOT NULL,
                settings text NOT NULL,
                set_at_ms bigint NOT NULL
            )
            """,
            """
            CREATE TABLE fleet_windows (
                metric text NOT NULL,
                bucket_seconds integer NOT NULL,
                bucket_start_ms bigint NOT NULL,
                cohort text NOT NULL,
                unit text NOT NULL,
                reports bigint NOT NULL,
                count bigint NOT NULL,
                sum double precision NOT NULL,
                min double precision NOT NULL,
                max double precision NOT NULL,
                sketch bytea,
                PRIMARY KEY (metric, bucket_seconds, bucket_start_ms, cohort)
            )
            """,
            "CREATE INDEX fleet_windows_expiry ON fleet_windows (bucket_start_ms)",
            """
            CREATE TABLE audit (
                id bigserial PRIMARY KEY,
                at_ms bigint NOT NULL,
                actor text NOT NULL,
                action text NOT NULL,
                device_id text,
                reason text,
                outcome text NOT NULL,
                detail text
            )
            """,
            "CREATE INDEX audit_at ON audit (at_ms)",
            """
            CREATE TABLE web_sessions (
                id_hash bytea PRIMARY KEY,
                token_id bigint NOT NULL REFERENCES tokens(id),
                csrf text NOT NULL,
                created_at_ms bigint NOT NULL,
                expires_at_ms bigint NOT NULL,
                kind text NOT NULL DEFAULT 'session'
            )
            """,
            "CREATE INDEX web_sessions_expiry ON web_sessions (expires_at_ms)",
            """
            CREATE TABLE troubleshooting_sessions (
                id bigserial PRIMARY KEY,
                device_id text NOT NULL REFERENCES devices(id),
                actor text NOT NULL,
                reason text NOT NULL,
                started_at_ms bigint NOT NULL,
                ends_at_ms bigint NOT NULL,
                stopped_at_ms bigint,
                stopped_by text,
                end_recorded boolean NOT NULL DEFAULT false,
                interval_seconds integer NOT NULL,
                window_seconds integer NOT NULL
            )
            """,
            "CREATE INDEX troubleshooting_sessions_device ON troubleshooting_sessions (device_id, started_at_ms)",
            "CREATE INDEX troubleshooting_sessions_open ON troubleshooting_sessions (end_recorded, ends_at_ms)",
        ]),
        // Leaner indexes (collector 0.5): a btree on `device_id` alone, where a device's rows of one day
        // partition share one key (btree deduplication keeps one copy of it and a list of row pointers),
        // and BRIN indexes on `window_end_ms`, which rows arrive in order of. Together about a fifth of
        // the two btrees they replace. On a new database the old ones go at once; on one that holds data
        // the new ones are made here only on the parents (`ON ONLY`: no rows read, no lock held), and
        // ``convergeIndexes()`` builds them partition by partition without holding writers, then drops the
        // old ones.
        ("v2-lean-report-indexes", [
            "CREATE INDEX report_data_by_device ON ONLY report_data (device_id)",
            "CREATE INDEX report_data_by_end ON ONLY report_data USING brin (window_end_ms) WITH (\(brinOptions))",
            """
            DO $$
            DECLARE class_table text;
            BEGIN
                FOR class_table IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                   WHERE i.inhparent = 'report_data'::regclass ORDER BY 1 LOOP
                    EXECUTE format('CREATE INDEX %I ON ONLY %I (device_id)', class_table || '_by_device', class_table);
                    EXECUTE format('ALTER INDEX report_data_by_device ATTACH PARTITION %I', class_table || '_by_device');
                    EXECUTE format('CREATE INDEX %I ON ONLY %I USING brin (window_end_ms) WITH (\(brinOptions))', class_table || '_by_end', class_table);
                    EXECUTE format('ALTER INDEX report_data_by_end ATTACH PARTITION %I', class_table || '_by_end');
                END LOOP;
                IF NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_inherits d ON d.inhparent = i.inhrelid
                               WHERE i.inhparent = 'report_data'::regclass) THEN
                    DROP INDEX report_data_device;
                    DROP INDEX report_data_recent;
                END IF;
                IF NOT EXISTS (SELECT 1 FROM reports) THEN
                    DROP INDEX reports_window_end;
                    CREATE INDEX reports_by_end ON reports USING brin (window_end_ms) WITH (\(brinOptions));
                END IF;
            END $$
            """,
        ]),
    ]

    /// Storage parameters of every BRIN index: a summary per 32 pages (256 KiB) of rows, and ranges
    /// summarised as they fill rather than only by VACUUM (until then a range is read as a possible match).
    /// Part of migration v2, and the partitions' indexes ``convergeIndexes()`` builds must match it: a
    /// change is a new migration, never an edit here.
    static let brinOptions = "pages_per_range = 32, autosummarize = on"

    /// Indexes of collector 0.4 that ``convergeIndexes()`` replaces.
    static let replacedIndexes = ["report_data_device", "report_data_recent", "reports_window_end"]

    /// Applies the migrations not yet applied. Safe to call from several processes at once.
    public func migrate() async throws { try await migrate(through: Self.migrations.count) }

    /// Applies the first `count` migrations (a test makes a database of an older collector this way).
    func migrate(through count: Int) async throws {
        try await storage("migrating the PostgreSQL schema") {
            try await client.withTransaction(logger: logger) { conn in
                try await conn.query("SET LOCAL lock_timeout = '10s'", logger: self.logger)
                try await conn.query("SELECT pg_advisory_xact_lock(\(Self.schemaLock))", logger: self.logger)
                try await conn.query("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at_ms bigint NOT NULL)", logger: self.logger)
                var applied = Set<String>()
                for try await name in try await conn.query("SELECT name FROM schema_migrations", logger: self.logger).decode(String.self) {
                    applied.insert(name)
                }
                for m in Self.migrations.prefix(count) where !applied.contains(m.name) {
                    for statement in m.statements { try await conn.query(PostgresQuery(unsafeSQL: statement), logger: self.logger) }
                    try await conn.query("INSERT INTO schema_migrations (name, applied_at_ms) VALUES (\(m.name), \(nowMs()))", logger: self.logger)
                }
            }
            try await makeUpcomingPartitions()
        }
    }

    /// The classes whose rows live in `report_data` (audit and fleet have tables of their own).
    static let reportClasses = DataClass.required.filter { $0 != .audit && $0 != .fleet }.map(\.rawValue)

    /// Today's and tomorrow's partition of every report class (UTC, by this machine's clock).
    func makeUpcomingPartitions() async throws {
        let now = nowMs()
        try await ensurePartitions(Self.reportClasses.flatMap { c in [(c, now), (c, now + Self.dayMs)] })
    }

    /// Advisory-lock keys (any fixed numbers, unique within this schema).
    static let schemaLock: Int64 = 0x6D65_6574_0001
    static let partitionLock: Int64 = 0x6D65_6574_0002
    static let indexLock: Int64 = 0x6D65_6574_0003

    // MARK: Partitions

    static let dayMs: Int64 = 86_400_000

    /// `report_data_<class>`: classes are lower-case words (``DataClass``); anything else is refused, as it
    /// becomes part of a table name.
    static func classTable(_ dataClass: String) throws -> String {
        guard !dataClass.isEmpty, dataClass.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }) else {
            throw CollectorError(.storage, "data class \"\(dataClass)\" cannot name a partition (lower-case letters and _ only)")
        }
        return "report_data_\(dataClass)"
    }

    /// `report_data_<class>_<yyyymmdd>` for the UTC day holding `windowEndMs`, and that day's bounds.
    static func dayPartition(_ dataClass: String, windowEndMs: Int64) throws -> (name: String, fromMs: Int64, toMs: Int64) {
        let day = windowEndMs >= 0 ? windowEndMs / dayMs : (windowEndMs - dayMs + 1) / dayMs
        let date = Date(timeIntervalSince1970: Double(day) * 86_400)
        let parts = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        let stamp = String(format: "%04d%02d%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
        return ("\(try classTable(dataClass))_\(stamp)", day * dayMs, (day + 1) * dayMs)
    }

    /// Makes the class and day partitions these rows need, in a short transaction of their own before the
    /// data is written. A day is made as a table of its own and then attached, which locks the class table
    /// only in SHARE UPDATE EXCLUSIVE mode: readers and writers of the class go on meanwhile. A lock it
    /// cannot get within 5 s is an error (the reports are refused and sent again), never a queue that
    /// holds every later reader behind it.
    func ensurePartitions(_ rows: [(dataClass: String, windowEndMs: Int64)]) async throws {
        var needed: [String: (dataClass: String, fromMs: Int64, toMs: Int64)] = [:]
        for r in rows {
            let p = try Self.dayPartition(r.dataClass, windowEndMs: r.windowEndMs)
            needed[p.name] = (r.dataClass, p.fromMs, p.toMs)
        }
        let known = knownPartitions.withLock { $0 }
        let missing = needed.filter { !known.contains($0.key) }.sorted { $0.key < $1.key }
        guard !missing.isEmpty else { return }
        try await client.withTransaction(logger: logger) { conn in
            try await conn.query("SET LOCAL lock_timeout = '5s'", logger: self.logger)
            try await conn.query("SELECT pg_advisory_xact_lock(\(Self.partitionLock))", logger: self.logger)
            for (name, p) in missing {
                let parent = try Self.classTable(p.dataClass)
                // Names and the class literal were checked to be plain words and digits.
                try await conn.query(PostgresQuery(unsafeSQL: """
                    CREATE TABLE IF NOT EXISTS "\(parent)" PARTITION OF report_data FOR VALUES IN ('\(p.dataClass)') PARTITION BY RANGE (window_end_ms)
                    """), logger: self.logger)
                try await conn.query(PostgresQuery(unsafeSQL: """
                    CREATE TABLE IF NOT EXISTS "\(name)" (LIKE report_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
                    """), logger: self.logger)
                let attached = try await self.rows("SELECT 1 FROM pg_inherits WHERE inhrelid = $1::regclass", [name], on: conn)
                if attached.isEmpty {
                    try await conn.query(PostgresQuery(unsafeSQL: """
                        ALTER TABLE "\(parent)" ATTACH PARTITION "\(name)" FOR VALUES FROM (\(p.fromMs)) TO (\(p.toMs))
                        """), logger: self.logger)
                }
            }
        }
        knownPartitions.withLock { $0.formUnion(missing.map(\.key)) }
    }

    /// A day table of a class as the purge finds it.
    struct DayTable {
        var name: String
        /// The end of its day (exclusive).
        var toMs: Int64
        /// Attached to the class table (its rows are read); false for a table whose detach was interrupted
        /// before its drop, or is still pending.
        var attached: Bool
        var detachPending: Bool
    }

    /// Every day table of `dataClass` in the schema, attached or not: a purge interrupted between detach
    /// and drop (a killed process, a lost connection) leaves one behind, and the next purge must find it.
    func dayTables(_ dataClass: String) async throws -> [DayTable] {
        let parent = try Self.classTable(dataClass)
        var out: [DayTable] = []
        for r in try await rows("""
            SELECT c.relname AS name, i.inhrelid IS NOT NULL AS attached, COALESCE(i.inhdetachpending, false) AS pending
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
            WHERE c.relkind = 'r' AND starts_with(c.relname::text, $1) ORDER BY c.relname
            """, [parent + "_"]) {
            let name = try r["name"].decode(String.self)
            let stamp = name.dropFirst(parent.count + 1)
            guard stamp.count == 8, stamp.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let y = Int(stamp.prefix(4)), let m = Int(stamp.dropFirst(4).prefix(2)), let d = Int(stamp.suffix(2)) else { continue }
            var parts = DateComponents()
            (parts.year, parts.month, parts.day, parts.timeZone) = (y, m, d, TimeZone(identifier: "UTC"))
            guard let date = Calendar(identifier: .gregorian).date(from: parts) else { continue }
            out.append(DayTable(name: name, toMs: Int64(date.timeIntervalSince1970) * 1000 + Self.dayMs,
                                attached: try r["attached"].decode(Bool.self), detachPending: try r["pending"].decode(Bool.self)))
        }
        return out
    }

    /// Detaches (concurrently: writers are not held) and drops an expired day table; finishes a detach an
    /// earlier purge left pending; drops a table left detached. False when it could not be done now.
    func dropDay(_ table: DayTable, of dataClass: String) async throws -> Bool {
        let parent = try Self.classTable(dataClass)
        do {
            if table.detachPending {
                try await client.query(PostgresQuery(unsafeSQL: "ALTER TABLE \"\(parent)\" DETACH PARTITION \"\(table.name)\" FINALIZE"), logger: logger)
            } else if table.attached {
                try await client.query(PostgresQuery(unsafeSQL: "ALTER TABLE \"\(parent)\" DETACH PARTITION \"\(table.name)\" CONCURRENTLY"), logger: logger)
            }
            try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \"\(table.name)\""), logger: logger)
        } catch {
            // Another collector process purging at the same moment, or a lock not to be had now: the rows
            // stay filtered out of every read, and the next purge finishes the job.
            logger.warning("retention: day table not dropped now", metadata: ["table": "\(table.name)", "reason": "\(Self.describe(error))"])
            return false
        }
        knownPartitions.withLock { _ = $0.remove(table.name) }
        return true
    }

    // MARK: Index upkeep

    /// Set once no index of collector 0.4 is left (checked again by each new process).
    private let indexesConverged = Atomic<Bool>(false)

    /// Replaces collector 0.4's indexes on a database that held data when migration v2 ran, without
    /// holding writers: for each day table of `report_data` that lacks them, its `device_id` btree and
    /// `window_end_ms` BRIN index are built `CONCURRENTLY` and attached to its class's (a table is then
    /// indexed twice until the end); once every day table has them, the old indexes are dropped.
    /// `reports` gets its BRIN index the same way. Attaching and dropping take exclusive locks for a
    /// catalog change only, and give up after 2 s rather than queue every reader and writer behind a long
    /// transaction (the next purge tries again; a built index is reused). One collector process does it
    /// at a time (an advisory lock); the purge calls it after its deletes. It stops between partitions
    /// when the process shuts down. Returns true when done.
    @discardableResult
    func convergeIndexes() async throws -> Bool {
        if indexesConverged.load(ordering: .relaxed) { return true }
        if try await oldIndexesLeft().isEmpty {
            indexesConverged.store(true, ordering: .relaxed)
            return true
        }
        // The upkeep holds a connection for its whole run: with one, ingest would wait for it.
        guard settings.maxConnections >= 2 else {
            logger.warning("index upkeep: needs storage.postgres.max_connections of 2 or more; collector 0.4's indexes stay")
            return false
        }
        return try await client.withConnection { conn in
            var locked = false
            do {
                locked = try await self.rows("SELECT pg_try_advisory_lock($1) AS got", [Self.indexLock], on: conn)[0]["got"].decode(Bool.self)
                guard locked else { return false }  // another process is at it
                let done = try await self.convergeIndexes(on: conn)
                _ = try await self.rows("SELECT pg_advisory_unlock($1)", [Self.indexLock], on: conn)
                if done { self.indexesConverged.store(true, ordering: .relaxed) }
                return done
            } catch {
                // The connection goes back to the pool: it must not keep the lock or the timeout.
                _ = try? await self.rows("RESET lock_timeout", on: conn)
                _ = try? await self.rows("SELECT pg_advisory_unlock_all()", on: conn)
                throw error
            }
        }
    }

    /// Objects of the schema in use (`current_schema()` compared as a name, whatever its case).
    private static let inSchema = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"

    /// Which of ``replacedIndexes`` are still in the schema.
    private func oldIndexesLeft(on conn: PostgresConnection? = nil) async throws -> [String] {
        try await rows("""
            SELECT relname::text AS name FROM pg_class
            WHERE relnamespace = \(Self.inSchema) AND relkind IN ('i', 'I') AND relname = ANY($1)
            """, [Self.replacedIndexes], on: conn).map { try $0["name"].decode(String.self) }
    }

    private func convergeIndexes(on conn: PostgresConnection) async throws -> Bool {
        let left = try await oldIndexesLeft(on: conn)
        guard !left.isEmpty else { return true }
        // Day tables (not being detached) without a valid index attached to their class's new one.
        let missing = try await rows("""
            SELECT day.relname::text AS day, cidx.relname::text AS class_index, top.relname::text AS top
            FROM pg_class top
            JOIN pg_inherits ti ON ti.inhparent = top.oid
            JOIN pg_class cidx ON cidx.oid = ti.inhrelid
            JOIN pg_index ci ON ci.indexrelid = cidx.oid
            JOIN pg_inherits dt ON dt.inhparent = ci.indrelid AND NOT dt.inhdetachpending
            JOIN pg_class day ON day.oid = dt.inhrelid
            WHERE top.relnamespace = \(Self.inSchema) AND top.relname IN ('report_data_by_device', 'report_data_by_end')
              AND NOT EXISTS (SELECT 1 FROM pg_inherits di JOIN pg_index x ON x.indexrelid = di.inhrelid
                              WHERE di.inhparent = cidx.oid AND x.indrelid = day.oid AND x.indisvalid)
            ORDER BY 1, 3
            """, on: conn)
        for r in missing {
            guard !Task.isCancelled, !Task.isShuttingDownGracefully else { return false }
            let day = try r["day"].decode(String.self), classIndex = try r["class_index"].decode(String.self)
            let byDevice = try r["top"].decode(String.self) == "report_data_by_device"
            let name = day + (byDevice ? "_by_device" : "_by_end")
            let definition = byDevice ? "(device_id)" : "USING brin (window_end_ms) WITH (\(Self.brinOptions))"
            let started = ContinuousClock.now
            try await buildConcurrently(name, on: day, definition, conn: conn)
            guard try await withLockTimeout("ALTER INDEX \"\(classIndex)\" ATTACH PARTITION \"\(name)\"", what: "attaching \(name)", conn: conn) else {
                return false
            }
            logger.info("index upkeep: built and attached", metadata: ["index": "\(name)", "took": "\(ContinuousClock.now - started)"])
        }
        if left.contains("reports_window_end") {
            try await buildConcurrently("reports_by_end", on: "reports", "USING brin (window_end_ms) WITH (\(Self.brinOptions))", conn: conn)
            try await conn.query("DROP INDEX CONCURRENTLY IF EXISTS reports_window_end", logger: logger)
        }
        if left.contains("report_data_device") || left.contains("report_data_recent") {
            // Every day table now has both new indexes, valid (a partitioned index's own valid flag is
            // not looked at: PostgreSQL recomputes it only when an index is attached, not when a day is
            // dropped, and reads use the day tables' indexes).
            guard try await withLockTimeout("DROP INDEX IF EXISTS report_data_device, report_data_recent",
                                            what: "dropping report_data's old indexes", conn: conn) else { return false }
        }
        logger.info("index upkeep: collector 0.4's report indexes replaced", metadata: ["dropped": "\(left)"])
        return true
    }

    /// Runs a statement that takes an exclusive lock for a catalog change with a 2-second `lock_timeout`;
    /// false (and a warning) when the lock could not be had: the next purge tries again.
    private func withLockTimeout(_ sql: String, what: String, conn: PostgresConnection) async throws -> Bool {
        try await conn.query("SET lock_timeout = '2s'", logger: logger)
        do {
            try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "55P03" {
            try await conn.query("RESET lock_timeout", logger: logger)
            logger.warning("index upkeep: \(what) waited 2 s for a lock; the next purge tries again", metadata: ["reason": "\(Self.describe(error))"])
            return false
        }
        try await conn.query("RESET lock_timeout", logger: logger)
        return true
    }

    /// `CREATE INDEX CONCURRENTLY` under `name`; an invalid index of that name (a build interrupted
    /// before) is dropped first, a valid one kept.
    private func buildConcurrently(_ name: String, on table: String, _ definition: String, conn: PostgresConnection) async throws {
        let existing = try await rows("""
            SELECT x.indisvalid AS valid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
            WHERE c.relnamespace = \(Self.inSchema) AND c.relname = $1
            """, [name], on: conn)
        if let e = existing.first {
            if try e["valid"].decode(Bool.self) { return }
            try await conn.query(PostgresQuery(unsafeSQL: "DROP INDEX CONCURRENTLY IF EXISTS \"\(name)\""), logger: logger)
        }
        // Names are made of checked class words and digits (``dayPartition``) or fixed.
        try await conn.query(PostgresQuery(unsafeSQL: "CREATE INDEX CONCURRENTLY \"\(name)\" ON \"\(table)\" \(definition)"), logger: logger)
    }

    // MARK: Helpers

    private func storage<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as CollectorError { throw e } catch {
            throw CollectorError(.storage, "\(what) failed: \(Self.describe(error))", underlying: error)
        }
    }

    /// PostgreSQL's own message and SQLSTATE, or the connection problem; never the password (postgres-nio
    /// does not carry it in errors) and never the query's bound values.
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            // Not the detail field: it can quote a row's values (a key that conflicted).
            return "PostgreSQL \(info[.sqlState] ?? "?"): \(info[.message] ?? "no message")"
        }
        return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
    }

    private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A bound value; nil binds NULL.
    typealias Bind = (any PostgresThrowingDynamicTypeEncodable & Sendable)?

    /// Runs `sql` with `binds` ($1, $2, …) and returns the rows, each as a random-access row.
    private func rows(_ sql: String, _ binds: [Bind] = [], on conn: PostgresConnection? = nil) async throws -> [PostgresRandomAccessRow] {
        var bindings = PostgresBindings()
        for b in binds {
            if let b { try bindings.append(b) } else { bindings.appendNull() }
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        let sequence: PostgresRowSequence
        if let conn { sequence = try await conn.query(query, logger: logger) } else { sequence = try await client.query(query, logger: logger) }
        var out: [PostgresRandomAccessRow] = []
        for try await row in sequence { out.append(row.makeRandomAccess()) }
        return out
    }

    /// Rows changed by `sql` (which must end in `RETURNING 1` or similar).
    private func changed(_ sql: String, _ binds: [Bind], on conn: PostgresConnection? = nil) async throws -> Int {
        try await rows(sql, binds, on: conn).count
    }

    // MARK: Devices and tokens

    public func addDevice(_ id: String, nowMs: Int64) async throws -> Bool {
        try await storage("adding device") {
            try await changed("INSERT INTO devices (id, created_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1", [id, nowMs]) == 1
        }
    }

    public func deviceExists(_ id: String) async throws -> Bool {
        try await storage("reading device") { try await !rows("SELECT 1 FROM devices WHERE id = $1", [id]).isEmpty }
    }

    public func devices() async throws -> [DeviceSummary] {
        try await storage("listing devices") {
            try await rows("""
                SELECT d.id, d.created_at_ms, d.last_seq, d.last_report_at_ms, (SELECT COUNT(*) FROM reports r WHERE r.device_id = d.id) AS reports
                FROM devices d ORDER BY d.id COLLATE "C"
                """).map { r in
                DeviceSummary(id: try r["id"].decode(String.self), createdAtMs: try r["created_at_ms"].decode(Int64.self),
                              lastSeq: try r["last_seq"].decode(Int64?.self), lastReportAtMs: try r["last_report_at_ms"].decode(Int64?.self),
                              reports: Int(try r["reports"].decode(Int64.self)))
            }
        }
    }

    private static func tokenRecord(_ r: PostgresRandomAccessRow) throws -> TokenRecord {
        TokenRecord(id: try r["id"].decode(Int64.self), role: TokenRole(rawValue: try r["role"].decode(String.self)) ?? .device,
                    deviceID: try r["device_id"].decode(String?.self), name: try r["name"].decode(String.self),
                    createdAtMs: try r["created_at_ms"].decode(Int64.self), revokedAtMs: try r["revoked_at_ms"].decode(Int64?.self))
    }

    public func addToken(hash: [UInt8], role: TokenRole, deviceID: String?, name: String, nowMs: Int64) async throws -> TokenRecord {
        try await storage("adding token") {
            let r = try await rows("INSERT INTO tokens (token_hash, role, device_id, name, created_at_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                                   [Data(hash), role.rawValue, deviceID, name, nowMs])
            return TokenRecord(id: try r[0]["id"].decode(Int64.self), role: role, deviceID: deviceID, name: name, createdAtMs: nowMs, revokedAtMs: nil)
        }
    }

    public func token(hash: [UInt8]) async throws -> (record: TokenRecord, hash: [UInt8])? {
        try await storage("reading token") {
            guard let r = try await rows("SELECT * FROM tokens WHERE token_hash = $1", [Data(hash)]).first else { return nil }
            return (try Self.tokenRecord(r), [UInt8](try r["token_hash"].decode(Data.self)))
        }
    }

    public func token(id: Int64) async throws -> TokenRecord? {
        try await storage("reading token") { try await rows("SELECT * FROM tokens WHERE id = $1", [id]).first.map(Self.tokenRecord) }
    }

    public func tokens() async throws -> [TokenRecord] {
        try await storage("listing tokens") { try await rows("SELECT * FROM tokens ORDER BY id").map(Self.tokenRecord) }
    }

    public func revokeToken(id: Int64, nowMs: Int64) async throws -> Bool {
        try await storage("revoking token") {
            try await client.withTransaction(logger: logger) { conn in
                let revoked = try await self.changed("UPDATE tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL RETURNING 1",
                                                     [nowMs, id], on: conn) == 1
                // Its dashboard logins end with it.
                _ = try await self.rows("DELETE FROM web_sessions WHERE token_id = $1", [id], on: conn)
                return revoked
            }
        }
    }

    // MARK: Reports

    public func ingest(_ reports: [(report: Report, classes: [DataClass])], receivedAtMs: Int64) async throws -> [IngestOutcome] {
        guard !reports.isEmpty else { return [] }
        return try await commits.submit(reports.map { ($0.report, $0.classes, receivedAtMs) }) { batch in
            try await self.write(batch)
        }
    }

    /// Stores `batch` in one transaction with three statements whatever its size (arrays unnested by the
    /// server); one outcome per entry. A (device, seq) already stored, by this process or another, or twice
    /// in the batch, is a duplicate.
    private func write(_ batch: [GroupCommit.Entry]) async throws -> [IngestOutcome] {
        let encoded = try batch.map { try ReportRows.payloads($0.report, $0.classes) }
        let days = zip(batch, encoded).flatMap { e, payloads in payloads.map { ($0.dataClass, e.report.windowEndMs) } }
        for attempt in 1...2 {
            try await storage("making partitions") { try await ensurePartitions(days) }
            do {
                return try await insert(batch, encoded)
            } catch let e as PSQLError where attempt == 1 && e.serverInfo?[.sqlState] == "23514" {
                // No partition for a row: another collector process's purge dropped a day this process still
                // knew of. Nothing was committed; learn the partitions again and write once more.
                knownPartitions.withLock { $0.removeAll() }
            } catch {
                throw CollectorError(.storage, "storing reports failed: \(Self.describe(error))", underlying: error)
            }
        }
        throw CollectorError(.storage, "storing reports failed: no partition for a row after making them again")
    }

    private func insert(_ batch: [GroupCommit.Entry], _ encoded: [[(dataClass: String, seriesCount: Int, payload: [UInt8])]]) async throws -> [IngestOutcome] {
        try await client.withTransaction(logger: logger) { conn in
            var heads = (device: [String](), seq: [Int64](), end: [Int64](), version: [String](), received: [Int64](), series: [Int64]())
            // In (device, seq) order, so two collector processes writing the same devices lock rows in one order.
            for e in batch.sorted(by: { ($0.report.device, $0.report.seq) < ($1.report.device, $1.report.seq) }) {
                heads.device.append(e.report.device)
                heads.seq.append(Int64(e.report.seq))
                heads.end.append(e.report.windowEndMs)
                heads.version.append(e.report.agentVersion)
                heads.received.append(e.receivedAtMs)
                heads.series.append(Int64(e.report.series.count))
            }
            let inserted = try await self.rows("""
                INSERT INTO reports (device_id, seq, window_end_ms, agent_version, received_at_ms, series_count)
                SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[])
                ON CONFLICT DO NOTHING RETURNING device_id, seq
                """, [heads.device, heads.seq, heads.end, heads.version, heads.received, heads.series], on: conn)
            var fresh = Set<String>()
            for r in inserted { fresh.insert("\(try r["device_id"].decode(String.self))\u{0}\(try r["seq"].decode(Int64.self))") }
            var outcomes: [IngestOutcome] = []
            var data = (device: [String](), dataClass: [String](), end: [Int64](), seq: [Int64](), start: [Int64](), epoch: [Int64](),
                        series: [Int64](), codec: [Int64](), payload: [ByteBuffer]())
            var latest: [String: (seq: Int64, at: Int64)] = [:]
            for (e, payloads) in zip(batch, encoded) {
                // The first of two equal (device, seq) in one batch is the one stored.
                guard fresh.remove("\(e.report.device)\u{0}\(Int64(e.report.seq))") != nil else {
                    outcomes.append(.duplicate)
                    continue
                }
                for p in payloads {
                    data.device.append(e.report.device)
                    data.dataClass.append(p.dataClass)
                    data.end.append(e.report.windowEndMs)
                    data.seq.append(Int64(e.report.seq))
                    data.start.append(e.report.windowStartMs)
                    data.epoch.append(Int64(e.report.keyEpoch))
                    data.series.append(Int64(p.seriesCount))
                    data.codec.append(Int64(SeriesCodec.currentCodec))
                    data.payload.append(ByteBuffer(bytes: p.payload))
                }
                let l = latest[e.report.device]
                latest[e.report.device] = (max(l?.seq ?? 0, Int64(e.report.seq)), max(l?.at ?? 0, e.receivedAtMs))
                outcomes.append(.stored(series: e.report.series.count))
            }
            if !data.device.isEmpty {
                _ = try await self.rows("""
                    INSERT INTO report_data (device_id, data_class, window_end_ms, seq, window_start_ms, key_epoch, series_count, codec, payload)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::bytea[])
                    """, [data.device, data.dataClass, data.end, data.seq, data.start, data.epoch, data.series, data.codec, data.payload], on: conn)
            }
            if !latest.isEmpty {
                // Sorted by device: two collectors updating the same devices lock them in the same order.
                let devices = latest.keys.sorted()
                _ = try await self.rows("""
                    UPDATE devices d SET last_seq = GREATEST(COALESCE(d.last_seq, 0), u.seq), last_report_at_ms = u.at
                    FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, seq, at) WHERE d.id = u.id
                    """, [devices, devices.map { latest[$0]!.seq }, devices.map { latest[$0]!.at }], on: conn)
            }
            return outcomes
        }
    }

    /// `(data_class = $n AND window_end_ms >= $n+1) OR …` for every class, numbered from `first`.
    static func retentionFilter(_ cutoffs: [DataClass: Int64], first: Int) -> (sql: String, binds: [Bind]) {
        let sorted = cutoffs.sorted { $0.key < $1.key }
        guard !sorted.isEmpty else { return ("false", []) }
        let sql = sorted.indices.map { i in "(data_class = $\(first + 2 * i) AND window_end_ms >= $\(first + 2 * i + 1))" }.joined(separator: " OR ")
        return ("(\(sql))", sorted.flatMap { [$0.key.rawValue, $0.value] as [Bind] })
    }

    private static func reportRow(_ r: PostgresRandomAccessRow) throws -> ReportRows.Row {
        ReportRows.Row(deviceID: try r["device_id"].decode(String.self), seq: try r["seq"].decode(Int64.self),
                       dataClass: try r["data_class"].decode(String.self), windowStartMs: try r["window_start_ms"].decode(Int64.self),
                       windowEndMs: try r["window_end_ms"].decode(Int64.self), codec: Int(try r["codec"].decode(Int16.self)),
                       seriesCount: Int(try r["series_count"].decode(Int32.self)), payload: [UInt8](try r["payload"].decode(Data.self)))
    }

    public func windows(device: String, metric: String?, fromMs: Int64, toMs: Int64, cutoffs: [DataClass: Int64],
                        limit: Int) async throws -> [StoredWindow] {
        let filter = Self.retentionFilter(cutoffs, first: 4)
        let found = try await storage("reading series") {
            try await rows("""
                SELECT device_id, seq, data_class, window_start_ms, window_end_ms, codec, series_count, payload FROM report_data
                WHERE device_id = $1 AND window_end_ms > $2 AND window_start_ms < $3 AND \(filter.sql)
                """, [device, fromMs, toMs] + filter.binds)
        }
        var out: [StoredWindow] = []
        for r in found {
            out += try await storage("decoding stored series") { try ReportRows.windows(try Self.reportRow(r), where: { metric == nil || $0 == metric }) }
        }
        return ReportRows.ordered(out, limit: limit)
    }

    public func latestWindows(metrics: Set<String>, sinceMs: Int64, cutoffs: [DataClass: Int64]) async throws -> [StoredWindow] {
        let classes = Set(metrics.compactMap { MetricCatalog.descriptor(named: $0)?.dataClass })
        let filter = Self.retentionFilter(cutoffs.filter { classes.contains($0.key) }, first: 2)
        let found = try await storage("reading the newest windows") {
            try await rows("""
                SELECT DISTINCT ON (device_id, data_class) device_id, seq, data_class, window_start_ms, window_end_ms, codec, series_count, payload
                FROM report_data WHERE window_end_ms > $1 AND \(filter.sql) ORDER BY device_id, data_class, window_end_ms DESC, seq DESC
                """, [sinceMs] + filter.binds)
        }
        var out: [StoredWindow] = []
        for r in found {
            out += try await storage("decoding stored series") { try ReportRows.windows(try Self.reportRow(r), where: { metrics.contains($0) }) }
        }
        return out
    }

    // MARK: Retention and erasure

    public func purge(cutoffs: [DataClass: Int64], dryRun: Bool) async throws -> [String: Int] {
        try await storage("purging") {
            if !dryRun { try await makeUpcomingPartitions() }
            var counts: [String: Int] = [:]
            for (c, cutoff) in cutoffs.sorted(by: { $0.key < $1.key }) where c != .audit && c != .fleet {
                counts[c.rawValue] = Int(try await rows("SELECT COALESCE(SUM(series_count), 0)::int8 AS n FROM report_data WHERE data_class = $1 AND window_end_ms < $2",
                                                        [c.rawValue, cutoff])[0]["n"].decode(Int64.self))
                guard !dryRun else { continue }
                // Whole days first: detached concurrently (no lock that holds writers), then dropped.
                for table in try await dayTables(c.rawValue) where table.toMs <= cutoff {
                    let started = ContinuousClock.now
                    if try await dropDay(table, of: c.rawValue) {
                        logger.info("retention: dropped partition", metadata: ["partition": "\(table.name)", "took": "\(ContinuousClock.now - started)"])
                    }
                }
                // Then what has expired inside the partition that straddles the cut-off.
                _ = try await rows("DELETE FROM report_data WHERE data_class = $1 AND window_end_ms < $2", [c.rawValue, cutoff])
            }
            let telemetry = cutoffs.filter { $0.key != .audit && $0.key != .fleet }.values
            if let oldest = telemetry.min() {
                counts["reports"] = Int(try await rows("SELECT COUNT(*) AS n FROM reports WHERE window_end_ms < $1", [oldest])[0]["n"].decode(Int64.self))
                if !dryRun { _ = try await rows("DELETE FROM reports WHERE window_end_ms < $1", [oldest]) }
            }
            if let fleetCutoff = cutoffs[.fleet] {
                counts["fleet"] = Int(try await rows("SELECT COUNT(*) AS n FROM fleet_windows WHERE bucket_start_ms + bucket_seconds * 1000::int8 < $1",
                                                     [fleetCutoff])[0]["n"].decode(Int64.self))
                if !dryRun { _ = try await rows("DELETE FROM fleet_windows WHERE bucket_start_ms + bucket_seconds * 1000::int8 < $1", [fleetCutoff]) }
            }
            if let auditCutoff = cutoffs[.audit] {
                counts["audit"] = Int(try await rows("SELECT COUNT(*) AS n FROM audit WHERE at_ms < $1", [auditCutoff])[0]["n"].decode(Int64.self))
                if !dryRun { _ = try await rows("DELETE FROM audit WHERE at_ms < $1", [auditCutoff]) }
            }
            if !dryRun, let cutoff = cutoffs[.troubleshooting] {
                // A troubleshooting session is kept as long as the data it produced.
                _ = try await rows("DELETE FROM troubleshooting_sessions WHERE end_recorded AND ends_at_ms < $1 AND COALESCE(stopped_at_ms, ends_at_ms) < $1",
                                   [cutoff])
            }
            if !dryRun {
                // After every delete, so expired data never waits for an index build, and after the day
                // drops, so fewer days are left to index. A failure here is logged, not the purge's.
                do { try await convergeIndexes() } catch {
                    logger.warning("index upkeep failed; the next purge tries again", metadata: ["reason": "\(Self.describe(error))"])
                }
            }
            return counts
        }
    }

    public func erase(device: String) async throws -> [String: Int] {
        try await storage("erasing device data") {
            try await client.withTransaction(logger: logger) { conn in
                var counts: [String: Int] = [:]
                counts["series_windows"] = Int(try await self.rows("SELECT COALESCE(SUM(series_count), 0)::int8 AS n FROM report_data WHERE device_id = $1",
                                                                   [device], on: conn)[0]["n"].decode(Int64.self))
                _ = try await self.rows("DELETE FROM report_data WHERE device_id = $1", [device], on: conn)
                counts["reports"] = try await self.changed("DELETE FROM reports WHERE device_id = $1 RETURNING 1", [device], on: conn)
                _ = try await self.rows("DELETE FROM troubleshooting_sessions WHERE device_id = $1", [device], on: conn)
                _ = try await self.rows("UPDATE devices SET last_seq = NULL, last_report_at_ms = NULL WHERE id = $1", [device], on: conn)
                return counts
            }
        }
    }

    // MARK: Fleet aggregates

    /// Cells merged per pair of statements: a flush of a day of windows holds tens of thousands.
    static let fleetCellsPerStatement = 2_000

    public func mergeFleet(_ cells: [FleetCell]) async throws {
        // In key order, so two collectors merging the same cells lock them in the same order; cells of one
        // key merged first (a statement may not touch a row twice).
        var sorted: [FleetCell] = []
        sorted.reserveCapacity(cells.count)
        for cell in cells.sorted(by: { $0.key < $1.key }) {
            if let last = sorted.indices.last, sorted[last].key == cell.key {
                sorted[last].merge(cell)
            } else {
                sorted.append(cell)
            }
        }
        try await storage("writing fleet aggregates") {
            try await client.withTransaction(logger: logger) { conn in
                var start = 0
                while start < sorted.count {
                    let end = min(start + Self.fleetCellsPerStatement, sorted.count)
                    try await self.mergeFleet(sorted[start..<end], on: conn)
                    start = end
                }
            }
        }
    }

    /// Two statements for a slice of cells, whatever its size (one statement pair per cell made a shutdown
    /// that flushed a day of windows take 40 s): the first makes the rows that are missing and locks and
    /// returns every row, in the slice's (key) order; the second writes the merged cells back.
    private func mergeFleet(_ cells: ArraySlice<FleetCell>, on conn: PostgresConnection) async throws {
        let metrics = cells.map(\.key.metric), buckets = cells.map { Int64($0.key.bucketSeconds) }
        let starts = cells.map(\.key.bucketStartMs), cohorts = cells.map(\.key.cohort)
        let found = try await self.rows("""
            INSERT INTO fleet_windows (metric, bucket_seconds, bucket_start_ms, cohort, unit, reports, count, sum, min, max, sketch)
            SELECT k.metric, k.bucket_seconds, k.bucket_start_ms, k.cohort, k.unit, 0, 0, 0, 0, 0, NULL
            FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[]) WITH ORDINALITY
                AS k(metric, bucket_seconds, bucket_start_ms, cohort, unit, n)
            ORDER BY k.n
            ON CONFLICT (metric, bucket_seconds, bucket_start_ms, cohort) DO UPDATE SET unit = fleet_windows.unit
            RETURNING metric, bucket_seconds, bucket_start_ms, cohort, unit, reports, count, sum, min, max, sketch
            """, [metrics, buckets, starts, cohorts, cells.map(\.unit)], on: conn)
        var stored: [FleetCell.Key: FleetCell] = [:]
        stored.reserveCapacity(found.count)
        for r in found {
            let key = FleetCell.Key(metric: try r["metric"].decode(String.self), cohort: try r["cohort"].decode(String.self),
                                    bucketSeconds: Int(try r["bucket_seconds"].decode(Int64.self)),
                                    bucketStartMs: try r["bucket_start_ms"].decode(Int64.self))
            stored[key] = try Self.fleetCell(key, r)
        }
        var merged: [FleetCell] = []
        merged.reserveCapacity(cells.count)
        for var cell in cells {
            guard let row = stored[cell.key] else {
                throw CollectorError(.storage, "fleet cell \(cell.key.metric) \(cell.key.cohort) \(cell.key.bucketStartMs) was neither made nor found")
            }
            if row.reports > 0 || row.count > 0 { cell.merge(row) }
            merged.append(cell)
        }
        // A cell without a sketch is written as an empty bytea and stored as NULL (arrays of optionals are
        // not bound here).
        _ = try await self.rows("""
            UPDATE fleet_windows f SET unit = v.unit, reports = v.reports, count = v.count, sum = v.sum, min = v.min, max = v.max,
                sketch = NULLIF(v.sketch, ''::bytea)
            FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::float8[], $9::float8[],
                        $10::float8[], $11::bytea[]) AS v(metric, bucket_seconds, bucket_start_ms, cohort, unit, reports, count, sum, min, max, sketch)
            WHERE f.metric = v.metric AND f.bucket_seconds = v.bucket_seconds AND f.bucket_start_ms = v.bucket_start_ms AND f.cohort = v.cohort
            """, [metrics, buckets, starts, cohorts, merged.map(\.unit), merged.map { Int64($0.reports) }, merged.map { Int64($0.count) },
                  merged.map(\.sum), merged.map(\.min), merged.map(\.max),
                  merged.map { ByteBuffer(bytes: $0.sketch.map(SeriesCodec.encodeSketch) ?? []) }], on: conn)
    }

    static func fleetCell(_ key: FleetCell.Key, _ r: PostgresRandomAccessRow) throws -> FleetCell {
        FleetCell(key: key, unit: try r["unit"].decode(String.self), reports: Int(try r["reports"].decode(Int64.self)),
                  count: Int(try r["count"].decode(Int64.self)), sum: try r["sum"].decode(Double.self), min: try r["min"].decode(Double.self),
                  max: try r["max"].decode(Double.self), sketch: try r["sketch"].decode(Data?.self).map { try SeriesCodec.decodeSketch([UInt8]($0)) })
    }

    public func fleet(metric: String, bucketSeconds: Int, fromMs: Int64, toMs: Int64, cutoffMs: Int64) async throws -> [FleetCell] {
        try await storage("reading fleet aggregates") {
            try await rows("""
                SELECT * FROM fleet_windows WHERE metric = $1 AND bucket_seconds = $2 AND bucket_start_ms >= $3 AND bucket_start_ms < $4
                AND bucket_start_ms + bucket_seconds * 1000::int8 > $5 AND reports > 0 ORDER BY bucket_start_ms, cohort COLLATE "C"
                """, [metric, Int64(bucketSeconds), fromMs, toMs, cutoffMs]).map { r in
                try Self.fleetCell(FleetCell.Key(metric: metric, cohort: try r["cohort"].decode(String.self), bucketSeconds: bucketSeconds,
                                                 bucketStartMs: try r["bucket_start_ms"].decode(Int64.self)), r)
            }
        }
    }

    // MARK: Remote settings

    public func setSettings(_ settings: AgentSettings, device: String, nowMs: Int64) async throws -> UInt64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(settings), as: UTF8.self)
        return try await storage("storing device settings") {
            let r = try await rows("""
                INSERT INTO device_settings (device_id, version, settings, set_at_ms) VALUES ($1, 1, $2, $3)
                ON CONFLICT (device_id) DO UPDATE SET version = device_settings.version + 1, settings = excluded.settings, set_at_ms = excluded.set_at_ms
                RETURNING version
                """, [device, text, nowMs])
            return UInt64(try r[0]["version"].decode(Int64.self))
        }
    }

    public func settings(device: String) async throws -> AgentSettingsDocument? {
        let found = try await storage("reading device settings") {
            try await rows("SELECT version, settings FROM device_settings WHERE device_id = $1", [device]).first.map {
                (version: try $0["version"].decode(Int64.self), text: try $0["settings"].decode(String.self))
            }
        }
        guard let found else { return nil }
        let settings = try JSONDecoder().decode(AgentSettings.self, from: Data(found.text.utf8))
        return AgentSettingsDocument(device: device, version: UInt64(found.version), settings: settings)
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await storage("writing audit entry") {
            _ = try await rows("INSERT INTO audit (at_ms, actor, action, device_id, reason, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                               [entry.atMs, entry.actor, entry.action, entry.deviceID, entry.reason, entry.outcome, entry.detail])
        }
    }

    public func audit(device: String?, sinceMs: Int64, limit: Int) async throws -> [AuditEntry] {
        try await storage("reading audit trail") {
            let found = if let device {
                try await rows("SELECT * FROM audit WHERE at_ms >= $1 AND device_id = $2 ORDER BY id DESC LIMIT $3", [sinceMs, device, Int64(limit)])
            } else {
                try await rows("SELECT * FROM audit WHERE at_ms >= $1 ORDER BY id DESC LIMIT $2", [sinceMs, Int64(limit)])
            }
            return try found.map { r in
                AuditEntry(id: try r["id"].decode(Int64.self), atMs: try r["at_ms"].decode(Int64.self), actor: try r["actor"].decode(String.self),
                           action: try r["action"].decode(String.self), deviceID: try r["device_id"].decode(String?.self),
                           reason: try r["reason"].decode(String?.self), outcome: try r["outcome"].decode(String.self),
                           detail: try r["detail"].decode(String?.self))
            }
        }
    }

    // MARK: Dashboard sessions

    public func createWebSession(_ session: WebSession) async throws {
        try await storage("starting a dashboard session") {
            _ = try await rows("DELETE FROM web_sessions WHERE expires_at_ms < $1", [session.createdAtMs])
            _ = try await rows("INSERT INTO web_sessions (id_hash, token_id, csrf, created_at_ms, expires_at_ms, kind) VALUES ($1, $2, $3, $4, $5, $6)",
                               [Data(session.idHash), session.tokenID, session.csrf, session.createdAtMs, session.expiresAtMs,
                                session.isLoginLink ? "login_link" : "session"])
        }
    }

    public func webSession(idHash: [UInt8], nowMs: Int64) async throws -> WebSession? {
        try await storage("reading a dashboard session") {
            try await rows("SELECT * FROM web_sessions WHERE id_hash = $1 AND expires_at_ms > $2", [Data(idHash), nowMs]).first.map { r in
                WebSession(idHash: idHash, tokenID: try r["token_id"].decode(Int64.self), csrf: try r["csrf"].decode(String.self),
                           createdAtMs: try r["created_at_ms"].decode(Int64.self), expiresAtMs: try r["expires_at_ms"].decode(Int64.self),
                           isLoginLink: try r["kind"].decode(String.self) == "login_link")
            }
        }
    }

    public func deleteWebSession(idHash: [UInt8]) async throws -> Bool {
        try await storage("ending a dashboard session") {
            try await changed("DELETE FROM web_sessions WHERE id_hash = $1 RETURNING 1", [Data(idHash)]) == 1
        }
    }

    // MARK: Troubleshooting sessions

    private static func session(_ r: PostgresRandomAccessRow) throws -> TroubleshootingSession {
        TroubleshootingSession(id: try r["id"].decode(Int64.self), deviceID: try r["device_id"].decode(String.self), actor: try r["actor"].decode(String.self),
                               reason: try r["reason"].decode(String.self), startedAtMs: try r["started_at_ms"].decode(Int64.self),
                               endsAtMs: try r["ends_at_ms"].decode(Int64.self), stoppedAtMs: try r["stopped_at_ms"].decode(Int64?.self),
                               stoppedBy: try r["stopped_by"].decode(String?.self), intervalSeconds: Int(try r["interval_seconds"].decode(Int32.self)),
                               windowSeconds: Int(try r["window_seconds"].decode(Int32.self)))
    }

    private static let runningSQL = "device_id = $1 AND started_at_ms <= $2 AND ends_at_ms > $2 AND stopped_at_ms IS NULL"

    public func startSession(device: String, actor: String, reason: String, startMs: Int64, endMs: Int64,
                             intervalSeconds: Int, windowSeconds: Int) async throws -> TroubleshootingSession? {
        try await storage("starting a troubleshooting session") {
            try await client.withTransaction(logger: logger) { conn in
                // One at a time per device: the device's row is locked, so two collectors cannot both start one.
                _ = try await self.rows("SELECT 1 FROM devices WHERE id = $1 FOR NO KEY UPDATE", [device], on: conn)
                guard try await self.rows("SELECT 1 FROM troubleshooting_sessions WHERE \(Self.runningSQL)", [device, startMs], on: conn).isEmpty else {
                    return nil
                }
                let r = try await self.rows("""
                    INSERT INTO troubleshooting_sessions (device_id, actor, reason, started_at_ms, ends_at_ms, interval_seconds, window_seconds)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
                    """, [device, actor, reason, startMs, endMs, Int32(intervalSeconds), Int32(windowSeconds)], on: conn)
                return TroubleshootingSession(id: try r[0]["id"].decode(Int64.self), deviceID: device, actor: actor, reason: reason, startedAtMs: startMs,
                                              endsAtMs: endMs, stoppedAtMs: nil, stoppedBy: nil, intervalSeconds: intervalSeconds, windowSeconds: windowSeconds)
            }
        }
    }

    public func stopSession(device: String, id: Int64, actor: String, nowMs: Int64) async throws -> Bool {
        try await storage("stopping a troubleshooting session") {
            try await changed("""
                UPDATE troubleshooting_sessions SET stopped_at_ms = $2, stopped_by = $3, end_recorded = true WHERE id = $4 AND \(Self.runningSQL) RETURNING 1
                """, [device, nowMs, actor, id]) == 1
        }
    }

    public func sessions(device: String?, limit: Int) async throws -> [TroubleshootingSession] {
        try await storage("listing troubleshooting sessions") {
            let found = if let device {
                try await rows("SELECT * FROM troubleshooting_sessions WHERE device_id = $1 ORDER BY id DESC LIMIT $2", [device, Int64(limit)])
            } else {
                try await rows("SELECT * FROM troubleshooting_sessions ORDER BY id DESC LIMIT $1", [Int64(limit)])
            }
            return try found.map(Self.session)
        }
    }

    public func runningSession(device: String, nowMs: Int64) async throws -> TroubleshootingSession? {
        try await storage("reading the running troubleshooting session") {
            try await rows("SELECT * FROM troubleshooting_sessions WHERE \(Self.runningSQL) ORDER BY id DESC LIMIT 1", [device, nowMs]).first.map(Self.session)
        }
    }

    public func takeExpiredSessions(nowMs: Int64) async throws -> [TroubleshootingSession] {
        try await storage("recording ended troubleshooting sessions") {
            // SKIP LOCKED: a session another collector is recording is left to it; each is returned once.
            let found = try await rows("""
                UPDATE troubleshooting_sessions SET end_recorded = true WHERE id IN (
                    SELECT id FROM troubleshooting_sessions WHERE NOT end_recorded AND ends_at_ms <= $1 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
                RETURNING *
                """, [nowMs])
            let ended = try found.map(Self.session)
            return ended.sorted { $0.id < $1.id }
        }
    }

    public func diskUsage() async throws -> DiskUsage {
        try await storage("measuring the database") {
            let r = try await rows("SELECT pg_database_size(current_database()) AS n")
            return DiskUsage(location: "\(settings)", dataBytes: try r[0]["n"].decode(Int64.self), logBytes: 0)
        }
    }
}
