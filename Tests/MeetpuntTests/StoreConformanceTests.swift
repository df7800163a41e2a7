@testable import CollectorCore
import Foundation
import Logging
import Synchronization
import Testing
import TelemetryModel

/// The storage conformance suite (issue 15, acceptance 1): every backend behind ``TelemetryStore`` runs
/// the same tests and must answer alike — ingest, duplicates, queries, retention cut-offs, purge, erase,
/// export, audit, fleet aggregates, settings, dashboard logins and troubleshooting sessions. SQLite on
/// disk; PostgreSQL 15 started on loopback by `scripts/postgres/cluster.sh` (a new database per test).
@Suite(.serialized) struct StoreConformanceTests {
    static let day: Int64 = 86_400_000
    /// 2025-11-20T00:00:00Z: in the past, so the partitions PostgreSQL makes for today and tomorrow never
    /// fall inside a test's range.
    static let t0: Int64 = 1_763_596_800_000

    /// Day partitions of `report_data_link` from the first test day to the one holding `lastMs`.
    static func linkPartitions(_ pg: CollectorConfiguration.PostgresSettings, through lastMs: Int64) throws -> Int {
        let last = try PostgresStore.dayPartition("link", windowEndMs: lastMs).name
        let text = try TestDatabases.psql(pg, database: pg.database, """
            SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'report_data_link' AND c.relname <= '\(last)'
            """)
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    static func report(_ device: String, seq: UInt64, endMs: Int64, series: [Series] = StorageTests.sample()) -> (report: Report, classes: [DataClass]) {
        let classes = series.map { MetricCatalog.descriptor(named: $0.metric)?.dataClass ?? .traffic }
        return (Report(device: device, seq: seq, windowStartMs: endMs - 300_000, windowEndMs: endMs, keyEpoch: 7, agentVersion: "conformance",
                       series: series), classes)
    }

    static let keepAll: [DataClass: Int64] = Dictionary(uniqueKeysWithValues: DataClass.required.map { ($0, Int64.min) })

    @Test(arguments: Backend.testable)
    func devicesAndTokensAreStoredAndRevoked(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            #expect(try await store.addDevice("dev-a", nowMs: 10))
            #expect(try await !store.addDevice("dev-a", nowMs: 11), "a device added twice is there once")
            #expect(try await store.deviceExists("dev-a"))
            #expect(try await !store.deviceExists("dev-z"))
            let hash = [UInt8](repeating: 0xA5, count: 32)
            let device = try await store.addToken(hash: hash, role: .device, deviceID: "dev-a", name: "dev-a", nowMs: 20)
            let op = try await store.addToken(hash: [UInt8](repeating: 0x5A, count: 32), role: .operator_, deviceID: nil, name: "noc", nowMs: 21)
            #expect(device.id != op.id)
            let found = try #require(try await store.token(hash: hash))
            #expect(found.record == device && found.hash == hash)
            #expect(try await store.token(id: op.id) == op)
            #expect(try await store.token(hash: [UInt8](repeating: 1, count: 32)) == nil)
            #expect(try await store.tokens().map(\.id) == [device.id, op.id])
            try await store.createWebSession(WebSession(idHash: [1, 2, 3], tokenID: op.id, csrf: "c", createdAtMs: 30, expiresAtMs: 1_000))
            #expect(try await store.revokeToken(id: op.id, nowMs: 40))
            #expect(try await !store.revokeToken(id: op.id, nowMs: 41), "revoking twice changes nothing")
            #expect(try await store.token(id: op.id)?.revokedAtMs == 40)
            #expect(try await store.webSession(idHash: [1, 2, 3], nowMs: 50) == nil, "a revoked token's dashboard logins end with it")
            let summary = try #require(try await store.devices().first)
            #expect(summary.id == "dev-a" && summary.createdAtMs == 10 && summary.reports == 0 && summary.lastSeq == nil)
        }
    }

    @Test(arguments: Backend.testable)
    func reportsAreStoredOnceAndReadBackBitForBit(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            _ = try await store.addDevice("dev-a", nowMs: 0)
            _ = try await store.addDevice("dev-b", nowMs: 0)
            let a1 = Self.report("dev-a", seq: 1, endMs: Self.t0 + 300_000)
            let a2 = Self.report("dev-a", seq: 2, endMs: Self.t0 + 600_000)
            let b1 = Self.report("dev-b", seq: 1, endMs: Self.t0 + 300_000)
            // One batch: a duplicate inside it, and (device, seq) equal across devices is not a duplicate.
            let outcomes = try await store.ingest([a1, a2, a1, b1], receivedAtMs: Self.t0 + 700_000)
            let n = StorageTests.sample().count
            #expect(outcomes == [.stored(series: n), .stored(series: n), .duplicate, .stored(series: n)])
            #expect(try await store.ingest([a2], receivedAtMs: Self.t0 + 800_000) == [.duplicate], "sent again later: a duplicate")

            let windows = try await store.windows(device: "dev-a", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max)
            #expect(windows.count == 2 * n)
            let first = windows.filter { $0.seq == 1 }.sorted { $0.metric < $1.metric }
            for (w, s) in zip(first, StorageTests.sample().sorted { $0.metric < $1.metric }) {
                #expect(w.metric == s.metric && w.unit == s.unit && w.labels == s.labels && w.count == s.count && w.sketch == s.sketch)
                for (x, y) in [(w.min, s.min), (w.max, s.max), (w.mean, s.mean), (w.last, s.last), (w.sum, s.sum)] {
                    #expect(x.bitPattern == y.bitPattern, "\(backend): \(s.metric) \(y) came back as \(x)")
                }
                #expect(w.windowStartMs == Self.t0 && w.windowEndMs == Self.t0 + 300_000 && w.deviceID == "dev-a")
            }
            #expect(windows.map(\.windowStartMs) == windows.map(\.windowStartMs).sorted(), "ordered by window start")
            // Filters: metric, time range, limit.
            let rtt = try await store.windows(device: "dev-a", metric: "traffic.rtt_ms", fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max)
            #expect(rtt.map(\.seq).sorted() == [1, 2] && rtt.allSatisfy { $0.metric == "traffic.rtt_ms" && $0.dataClass == "traffic" })
            let late = try await store.windows(device: "dev-a", metric: nil, fromMs: Self.t0 + 400_000, toMs: .max, cutoffs: Self.keepAll, limit: .max)
            #expect(Set(late.map(\.seq)) == [2])
            #expect(try await store.windows(device: "dev-a", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: 3).count == 3)
            #expect(try await store.windows(device: "dev-c", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max).isEmpty)

            let devices = try await store.devices()
            #expect(devices.map(\.id) == ["dev-a", "dev-b"])
            #expect(devices[0].reports == 2 && devices[0].lastSeq == 2 && devices[0].lastReportAtMs == Self.t0 + 700_000)
            #expect(devices[1].reports == 1 && devices[1].lastSeq == 1)

            // The dashboard's newest window per device and class.
            let latest = try await store.latestWindows(metrics: ["wifi.station.signal_dbm", "link.rx_bytes"], sinceMs: 0, cutoffs: Self.keepAll)
            #expect(Set(latest.map { "\($0.deviceID)/\($0.metric)/\($0.seq)" })
                    == ["dev-a/wifi.station.signal_dbm/2", "dev-a/link.rx_bytes/2", "dev-b/wifi.station.signal_dbm/1", "dev-b/link.rx_bytes/1"])
        }
    }

    /// 400 concurrent submissions of 200 distinct reports: 200 stored, 200 duplicates, each caller told which.
    @Test(arguments: Backend.testable)
    func concurrentIngestsEachGetTheirOwnOutcome(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            _ = try await store.addDevice("gc-1", nowMs: 0)
            let outcomes = try await withThrowingTaskGroup(of: IngestOutcome.self) { group in
                for i in 0..<400 {
                    let r = Self.report("gc-1", seq: UInt64(i % 200 + 1), endMs: Self.t0 + Int64(i % 200) * 1000)
                    group.addTask { try await store.ingest([r], receivedAtMs: Self.t0)[0] }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .duplicate }.count == 200)
            #expect(try await store.devices().first?.reports == 200)
            let windows = try await store.windows(device: "gc-1", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max)
            #expect(windows.count == 200 * StorageTests.sample().count, "every series of every report, once")
        }
    }

    /// Reports over 40 days in every telemetry class. Expired rows are never returned, before or after the
    /// purge; the purge counts what it removes (a dry run counts the same without removing).
    @Test(arguments: Backend.testable)
    func expiredDataIsNeverReturnedAndThePurgeRemovesIt(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, configuration in
            _ = try await store.addDevice("dev-r", nowMs: 0)
            let reports = (0..<40).map { d in Self.report("dev-r", seq: UInt64(d + 1), endMs: Self.t0 + Int64(d) * Self.day + 3_600_000) }
            _ = try await store.ingest(reports, receivedAtMs: Self.t0)
            let now = Self.t0 + 40 * Self.day
            // Clients 7 days, wifi 30, traffic 20 (cut-off just after midnight), link 20 less 2 hours (cut-off inside a day).
            // Link holds three of the sample's five series.
            var cutoffs: [DataClass: Int64] = [:]
            cutoffs[.clients] = now - 7 * Self.day
            cutoffs[.wifi] = now - 30 * Self.day
            cutoffs[.link] = now - 20 * Self.day + 7_200_000  // inside day 20: its row (01:00) expired, its partition not
            cutoffs[.traffic] = now - 20 * Self.day + 1
            cutoffs[.troubleshooting] = now - 30 * Self.day
            cutoffs[.audit] = now - 365 * Self.day
            cutoffs[.fleet] = now - 400 * Self.day
            func stored() async throws -> [String: Int] {
                let w = try await store.windows(device: "dev-r", metric: nil, fromMs: 0, toMs: .max, cutoffs: cutoffs, limit: .max)
                #expect(w.allSatisfy { $0.windowEndMs >= cutoffs[DataClass(rawValue: $0.dataClass)] ?? .max }, "nothing expired is returned")
                return Dictionary(grouping: w, by: \.dataClass).mapValues(\.count)
            }
            let before = try await stored()
            #expect(before["link"] == 19 * 3 && before["traffic"] == 20 && before["wifi"] == 30, "\(before)")
            let dry = try await store.purge(cutoffs: cutoffs, dryRun: true)
            #expect(dry["link"] == 21 * 3 && dry["traffic"] == 20 && dry["wifi"] == 10 && dry["reports"] == 10, "\(dry)")
            #expect(try await store.windows(device: "dev-r", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max).count
                    == 40 * StorageTests.sample().count, "a dry run removes nothing")
            let purged = try await store.purge(cutoffs: cutoffs, dryRun: false)
            #expect(purged == dry)
            #expect(try await stored() == before)
            let all = try await store.windows(device: "dev-r", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max)
            #expect(all.allSatisfy { $0.windowEndMs >= cutoffs[DataClass(rawValue: $0.dataClass)]! }, "the purge removed every expired window")
            #expect(try await store.purge(cutoffs: cutoffs, dryRun: false).values.allSatisfy { $0 == 0 }, "nothing left to purge")
            if let pg = configuration.postgres {
                // Whole expired days went as partitions (days 0–19); day 20 straddles the cut-off and stays, its expired row deleted.
                #expect(try Self.linkPartitions(pg, through: Self.t0 + 39 * Self.day) == 20, "link day partitions left")
            }
        }
    }

    @Test(arguments: Backend.testable)
    func eraseRemovesOneDevicesDataAndExportShowsTheRest(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, configuration in
            let api = CollectorAPI(store: store, policy: .defaults, configuration: configuration, clock: { Self.t0 + Self.day }, logger: Logger(label: "test"))
            for d in ["dev-x", "dev-y"] {
                _ = try await store.addDevice(d, nowMs: 0)
                _ = try await store.ingest([Self.report(d, seq: 1, endMs: Self.t0), Self.report(d, seq: 2, endMs: Self.t0 + 300_000)], receivedAtMs: Self.t0)
            }
            let session = try #require(try await store.startSession(device: "dev-x", actor: "operator:noc", reason: "T-1", startMs: Self.t0,
                                                                    endMs: Self.t0 + 60_000, intervalSeconds: 1, windowSeconds: 10))
            let export = try await api.exportData(device: "dev-x")
            #expect(export.classes.values.reduce(0) { $0 + $1.windows.count } == 2 * StorageTests.sample().count)
            let counts = try await store.erase(device: "dev-x")
            #expect(counts["series_windows"] == 2 * StorageTests.sample().count && counts["reports"] == 2, "\(counts)")
            #expect(try await store.windows(device: "dev-x", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max).isEmpty)
            #expect(try await api.exportData(device: "dev-x").classes.values.allSatisfy { $0.windows.isEmpty })
            #expect(try await store.sessions(device: "dev-x", limit: 10).isEmpty, "its troubleshooting session \(session.id) went too")
            #expect(try await store.windows(device: "dev-y", metric: nil, fromMs: 0, toMs: .max, cutoffs: Self.keepAll, limit: .max).count
                    == 2 * StorageTests.sample().count, "the other device keeps everything")
            let x = try #require(try await store.devices().first { $0.id == "dev-x" })
            #expect(x.reports == 0 && x.lastSeq == nil)
            // After erasure the device starts again from seq 1, and is stored.
            #expect(try await store.ingest([Self.report("dev-x", seq: 1, endMs: Self.t0)], receivedAtMs: Self.t0) == [.stored(series: StorageTests.sample().count)])
        }
    }

    @Test(arguments: Backend.testable)
    func theAuditTrailIsReturnedNewestFirstAndFiltered(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            for i in 0..<5 {
                try await store.appendAudit(AuditEntry(atMs: 1_000 + Int64(i), actor: "operator:noc", action: "query windows",
                                                       deviceID: i % 2 == 0 ? "dev-a" : nil, reason: i == 4 ? "ticket 'T-9' \"quoted\"" : nil,
                                                       outcome: i == 3 ? "denied" : "ok", detail: "n=\(i)"))
            }
            let all = try await store.audit(device: nil, sinceMs: 0, limit: 100)
            #expect(all.map(\.atMs) == [1004, 1003, 1002, 1001, 1000])
            #expect(all[0].reason == "ticket 'T-9' \"quoted\"" && all[1].outcome == "denied" && all[0].detail == "n=4")
            #expect(try await store.audit(device: "dev-a", sinceMs: 0, limit: 100).map(\.atMs) == [1004, 1002, 1000])
            #expect(try await store.audit(device: nil, sinceMs: 1003, limit: 100).count == 2)
            #expect(try await store.audit(device: nil, sinceMs: 0, limit: 2).count == 2)
            let purged = try await store.purge(cutoffs: [.audit: 1002], dryRun: false)
            #expect(purged["audit"] == 2)
            #expect(try await store.audit(device: nil, sinceMs: 0, limit: 100).count == 3)
        }
    }

    @Test(arguments: Backend.testable)
    func fleetCellsMergeAndExpire(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            func cell(_ values: [Double], start: Int64) -> FleetCell {
                var sketch = QuantileSketch()
                for v in values { sketch.add(v) }
                return FleetCell(key: .init(metric: "wifi.station.signal_dbm", cohort: "band=5", bucketSeconds: 300, bucketStartMs: start), unit: "dbm",
                                 reports: 1, count: values.count, sum: values.reduce(0, +), min: values.min()!, max: values.max()!, sketch: sketch)
            }
            try await store.mergeFleet([cell([-40, -50], start: 0), cell([-70], start: 300_000)])
            try await store.mergeFleet([cell([-30, -90], start: 0)])
            let cells = try await store.fleet(metric: "wifi.station.signal_dbm", bucketSeconds: 300, fromMs: 0, toMs: .max, cutoffMs: 0)
            #expect(cells.count == 2)
            #expect(cells[0].reports == 2 && cells[0].count == 4 && cells[0].sum == -210 && cells[0].min == -90 && cells[0].max == -30)
            #expect(cells[0].sketch?.count == 4)
            #expect(try await store.fleet(metric: "wifi.station.signal_dbm", bucketSeconds: 300, fromMs: 0, toMs: .max, cutoffMs: 300_001).count == 1,
                    "an expired bucket is not returned")
            #expect(try await store.fleet(metric: "link.rx_rate", bucketSeconds: 300, fromMs: 0, toMs: .max, cutoffMs: 0).isEmpty)
            #expect(try await store.purge(cutoffs: [.fleet: 300_001], dryRun: false)["fleet"] == 1)
        }
    }

    /// A flush of many windows (more cells than one statement takes on PostgreSQL), with the same key twice in
    /// one call and cells without a sketch, merged twice: every cell ends up the sum of what was merged.
    @Test(arguments: Backend.testable)
    func aLargeFleetFlushMergesEveryCell(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            func cell(_ i: Int, _ value: Double) -> FleetCell {
                var sketch: QuantileSketch?
                if i % 2 == 0 {
                    var s = QuantileSketch()
                    s.add(value)
                    sketch = s
                }
                return FleetCell(key: .init(metric: "link.rx_rate", cohort: "role=wan", bucketSeconds: 300, bucketStartMs: Int64(i) * 300_000),
                                 unit: "bytes_per_second", reports: 1, count: 1, sum: value, min: value, max: value, sketch: sketch)
            }
            let n = 2_500
            try await store.mergeFleet((0..<n).map { cell($0, 10) } + [cell(7, 30), cell(8, 30)])
            try await store.mergeFleet((0..<n).map { cell($0, 20) })
            let cells = try await store.fleet(metric: "link.rx_rate", bucketSeconds: 300, fromMs: 0, toMs: .max, cutoffMs: 0)
            #expect(cells.count == n)
            for c in cells {
                let i = Int(c.key.bucketStartMs / 300_000)
                let extra = i == 7 || i == 8
                #expect(c.reports == (extra ? 3 : 2) && c.count == c.reports && c.sum == (extra ? 60 : 30) && c.min == 10 && c.max == (extra ? 30 : 20),
                        "cell \(i): \(c)")
                #expect((c.sketch?.count).map(Int.init) == (i % 2 == 0 ? c.count : nil), "cell \(i)")
            }
        }
    }

    @Test(arguments: Backend.testable)
    func settingsSessionsAndDashboardLoginsBehaveAlike(backend: Backend) async throws {
        try await TestDatabases.withStore(backend) { store, _ in
            _ = try await store.addDevice("dev-s", nowMs: 0)
            #expect(try await store.settings(device: "dev-s") == nil)
            let settings = AgentSettings(intervalSeconds: 30, windowSeconds: 300, samplers: ["wifi": false])
            #expect(try await store.setSettings(settings, device: "dev-s", nowMs: 1) == 1)
            #expect(try await store.setSettings(settings, device: "dev-s", nowMs: 2) == 2)
            #expect(try await store.settings(device: "dev-s")?.version == 2)
            #expect(try await store.settings(device: "dev-s")?.settings == settings)

            let s = try #require(try await store.startSession(device: "dev-s", actor: "operator:noc", reason: "T-2", startMs: 1_000, endMs: 61_000,
                                                              intervalSeconds: 1, windowSeconds: 10))
            #expect(try await store.startSession(device: "dev-s", actor: "operator:noc", reason: "again", startMs: 2_000, endMs: 62_000,
                                                 intervalSeconds: 1, windowSeconds: 10) == nil, "one running session per device")
            #expect(try await store.runningSession(device: "dev-s", nowMs: 30_000) == s)
            #expect(try await store.runningSession(device: "dev-s", nowMs: 61_000) == nil)
            #expect(try await store.stopSession(device: "dev-s", id: s.id, actor: "operator:noc", nowMs: 40_000))
            #expect(try await !store.stopSession(device: "dev-s", id: s.id, actor: "operator:noc", nowMs: 41_000))
            let t = try #require(try await store.startSession(device: "dev-s", actor: "admin:dpo", reason: "T-3", startMs: 50_000, endMs: 70_000,
                                                              intervalSeconds: 2, windowSeconds: 10))
            #expect(try await store.takeExpiredSessions(nowMs: 69_000).isEmpty)
            #expect(try await store.takeExpiredSessions(nowMs: 70_000).map(\.id) == [t.id], "the stopped one was recorded when stopped")
            #expect(try await store.takeExpiredSessions(nowMs: 80_000).isEmpty, "an ended session is taken once")
            let listed = try await store.sessions(device: "dev-s", limit: 10)
            #expect(listed.map(\.id) == [t.id, s.id] && listed[1].stoppedAtMs == 40_000 && listed[1].stoppedBy == "operator:noc")
            #expect(listed[0].intervalSeconds == 2)

            let op = try await store.addToken(hash: [UInt8](repeating: 7, count: 32), role: .operator_, deviceID: nil, name: "noc", nowMs: 0)
            let login = WebSession(idHash: [9, 9], tokenID: op.id, csrf: "csrf-1", createdAtMs: 100, expiresAtMs: 200)
            let link = WebSession(idHash: [8, 8], tokenID: op.id, csrf: "csrf-2", createdAtMs: 100, expiresAtMs: 200, isLoginLink: true)
            try await store.createWebSession(login)
            try await store.createWebSession(link)
            #expect(try await store.webSession(idHash: [9, 9], nowMs: 150) == login)
            #expect(try await store.webSession(idHash: [8, 8], nowMs: 150)?.isLoginLink == true)
            #expect(try await store.webSession(idHash: [9, 9], nowMs: 200) == nil, "expired")
            #expect(try await store.deleteWebSession(idHash: [8, 8]))
            #expect(try await !store.deleteWebSession(idHash: [8, 8]), "a link is used once")
        }
    }
}

/// Retention at scale on PostgreSQL (issue 15, acceptance 4, scaled to a test): 30 day-partitions of a
/// class, the purge drops the expired ones while another task keeps ingesting and a third keeps reading.
/// The reader never sees an expired row; ingest goes on through the drops. Prints how long each drop took
/// and the slowest ingest while the purge ran (how long the drops held writers).
@Suite(.serialized) struct PartitionRetentionTests {
    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func expiredDaysAreDroppedWhileIngestAndReadsContinue() async throws {
        let day = StoreConformanceTests.day, t0 = StoreConformanceTests.t0
        try await TestDatabases.withStore(.postgres) { store, configuration in
            let pg = try #require(configuration.postgres)
            let devices = (0..<20).map { "ret-\($0)" }
            for d in devices { _ = try await store.addDevice(d, nowMs: 0) }
            // 30 days × 20 devices × 4 reports a day.
            var seq: [String: UInt64] = [:]
            func next(_ d: String, endMs: Int64) -> (report: Report, classes: [DataClass]) {
                seq[d, default: 0] += 1
                return StoreConformanceTests.report(d, seq: seq[d]!, endMs: endMs)
            }
            for dayIndex in 0..<30 {
                var batch: [(report: Report, classes: [DataClass])] = []
                for d in devices { for q in 0..<4 { batch.append(next(d, endMs: t0 + Int64(dayIndex) * day + Int64(q) * 6 * 3_600_000 + 60_000)) } }
                _ = try await store.ingest(batch, receivedAtMs: t0)
            }
            #expect(try StoreConformanceTests.linkPartitions(pg, through: t0 + 29 * day) == 30)

            // Keep the last 10 days of every telemetry class.
            let now = t0 + 30 * day
            let cutoffs = Dictionary(uniqueKeysWithValues: DataClass.required.map { ($0, now - 10 * day) })
            let newReports = devices.map { d in (0..<40).map { i in next(d, endMs: now - 3_600_000 + Int64(i) * 1000) } }
            let (purged, ingestMs, reads, purgeMs) = try await Self.purgeWhileIngestingAndReading(store: store, devices: devices, newReports: newReports,
                                                                                          cutoffs: cutoffs, now: now, keptFrom: now - 10 * day)
            // Twenty expired days of link data: 20 × 20 devices × 4 reports × 3 link series.
            #expect(purged == 20 * 20 * 4 * 3)
            #expect(try StoreConformanceTests.linkPartitions(pg, through: t0 + 29 * day) == 10, "days 20–29 are kept (the reports sent during the purge fall in day 29)")
            let all = try await store.windows(device: "ret-0", metric: nil, fromMs: 0, toMs: .max, cutoffs: StoreConformanceTests.keepAll, limit: .max)
            #expect(all.allSatisfy { $0.windowEndMs >= now - 10 * day }, "nothing expired is left in the database")
            #expect(all.filter { $0.windowEndMs >= now - 3_600_000 }.count == 40 * StorageTests.sample().count, "every report ingested during the purge is there")
            let sorted = ingestMs.sorted()
            print("partition retention: the purge dropped 20 days of partitions of every class and deleted \(purged) link windows in \(Int(purgeMs)) ms; "
                  + "\(reads) reads during it saw nothing expired; ingest of 20 reports at a time during it: median \(Int(sorted[sorted.count / 2])) ms, "
                  + "max \(Int(sorted.last ?? 0)) ms")
        }
    }
}

extension PartitionRetentionTests {
    /// A purge killed between detaching a day and dropping it leaves a table of expired rows outside the
    /// partition tree, where reads and erasure no longer reach it: the next purge finds it and drops it.
    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func aDayTableLeftDetachedByAnInterruptedPurgeIsDroppedByTheNext() async throws {
        let day = StoreConformanceTests.day, t0 = StoreConformanceTests.t0
        try await TestDatabases.withStore(.postgres) { store, configuration in
            let pg = try #require(configuration.postgres)
            _ = try await store.addDevice("left-1", nowMs: 0)
            _ = try await store.ingest((0..<3).map { StoreConformanceTests.report("left-1", seq: UInt64($0 + 1), endMs: t0 + Int64($0) * day + 60_000) },
                                       receivedAtMs: t0)
            let first = try PostgresStore.dayPartition("link", windowEndMs: t0).name
            _ = try TestDatabases.psql(pg, database: pg.database, "ALTER TABLE report_data_link DETACH PARTITION \(first)")
            let tables = "SELECT count(*) FROM pg_class WHERE relname = '\(first)'"
            #expect(try TestDatabases.psql(pg, database: pg.database, tables).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            let cutoffs = Dictionary(uniqueKeysWithValues: DataClass.required.map { ($0, t0 + 2 * day) })
            _ = try await store.purge(cutoffs: cutoffs, dryRun: false)
            #expect(try TestDatabases.psql(pg, database: pg.database, tables).trimmingCharacters(in: .whitespacesAndNewlines) == "0",
                    "the detached table of expired rows is gone")
            #expect(try StoreConformanceTests.linkPartitions(pg, through: t0 + 2 * day) == 1, "day 2 is kept")
        }
    }

    final class Flag: Sendable {
        private let value = Mutex(true)
        var isSet: Bool { value.withLock { $0 } }
        func clear() { value.withLock { $0 = false } }
    }

    /// One task purges, one ingests `newReports` round by round (timing each), one reads until the purge
    /// is done; returns the link windows purged, the ingest latencies (ms), the reads made and the purge's time (ms).
    static func purgeWhileIngestingAndReading(store: any TelemetryStore, devices: [String], newReports: [[(report: Report, classes: [DataClass])]],
                                              cutoffs: [DataClass: Int64], now: Int64, keptFrom: Int64) async throws -> (Int, [Double], Int, Double) {
        let purging = Flag()
        return try await withThrowingTaskGroup(of: (Int, [Double], Int, Double).self) { group in
            group.addTask {
                defer { purging.clear() }  // also when the purge fails: the reader must stop
                let started = ContinuousClock.now
                let counts = try await store.purge(cutoffs: cutoffs, dryRun: false)
                let took = (ContinuousClock.now - started).components
                return (counts["link"] ?? 0, [], 0, Double(took.seconds) * 1000 + Double(took.attoseconds) / 1e15)
            }
            group.addTask {
                var latencies: [Double] = []
                for round in 0..<newReports[0].count {
                    let started = ContinuousClock.now
                    let outcomes = try await store.ingest(devices.indices.map { newReports[$0][round] }, receivedAtMs: now)
                    let took = (ContinuousClock.now - started).components
                    latencies.append(Double(took.seconds) * 1000 + Double(took.attoseconds) / 1e15)
                    #expect(outcomes.allSatisfy { $0 != .duplicate })
                }
                return (0, latencies, 0, 0)
            }
            group.addTask {
                var reads = 0
                while !Task.isCancelled && (purging.isSet || reads == 0) {
                    for d in devices.prefix(5) {
                        let windows = try await store.windows(device: d, metric: nil, fromMs: 0, toMs: .max, cutoffs: cutoffs, limit: .max)
                        #expect(windows.allSatisfy { $0.windowEndMs >= keptFrom }, "a reader saw an expired row during the purge")
                        reads += 1
                    }
                }
                return (0, [], reads, 0)
            }
            return try await group.reduce(into: (0, [Double](), 0, 0.0)) { acc, r in acc = (acc.0 + r.0, acc.1 + r.1, acc.2 + r.2, acc.3 + r.3) }
        }
    }
}

/// Collector 0.5 replaces 0.4's `report_data` btrees (`(device_id, window_end_ms)` and `(window_end_ms)`)
/// and the `reports` btree on `window_end_ms` with a `device_id` btree and BRIN indexes. A database that
/// holds data gets them partition by partition, built concurrently while ingest goes on; then the old
/// ones are dropped. Nothing stored is lost, and a day made afterwards has only the new indexes.
@Suite(.serialized) struct IndexUpkeepTests {
    /// `index name: table, method, valid` of every index on the report tables.
    static func reportIndexes(_ pg: CollectorConfiguration.PostgresSettings) throws -> [String: String] {
        let text = try TestDatabases.psql(pg, database: pg.database, """
            SELECT c.relname || '|' || t.relname || '|' || a.amname || '|' || x.indisvalid
            FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_am a ON a.oid = c.relam
            WHERE t.relname LIKE 'report%' AND c.relname NOT LIKE '%pkey'
            """)
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: "|", maxSplits: 1)
            if f.count == 2 { out[String(f[0])] = String(f[1]) }
        }
        return out
    }

    /// A new PostgreSQL database with collector 0.4's schema (migration v1 only) and `devices` in it, its
    /// store running for `body`; dropped afterwards.
    static func withCollector04Store(devices: [String], logLevel: Logger.Level,
                                     _ body: (PostgresStore, CollectorConfiguration.PostgresSettings) async throws -> Void) async throws {
        let c = try TestDatabases.configuration(.postgres)
        let pg = try #require(c.postgres)
        defer { _ = try? TestDatabases.psql(pg, "DROP DATABASE IF EXISTS \(pg.database) WITH (FORCE)") }
        var logger = Logger(label: "test.index-upkeep")
        logger.logLevel = logLevel
        let store = try PostgresStore(settings: pg, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { pool in
            pool.addTask { await store.run() }
            defer { pool.cancelAll() }
            try await store.migrate(through: 1)
            for d in devices { _ = try await store.addDevice(d, nowMs: 0) }
            try await body(store, pg)
        }
    }

    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func aDatabaseOfCollector04GetsTheLeanIndexesWhileIngestGoesOn() async throws {
        let day = StoreConformanceTests.day, t0 = StoreConformanceTests.t0
        let devices = (0..<5).map { "idx-\($0)" }
        try await Self.withCollector04Store(devices: devices, logLevel: .warning) { store, pg in
            // Collector 0.4's schema, and three days of five devices' reports in it.
            var seq: [String: UInt64] = [:]
            func next(_ d: String, endMs: Int64) -> (report: Report, classes: [DataClass]) {
                seq[d, default: 0] += 1
                return StoreConformanceTests.report(d, seq: seq[d]!, endMs: endMs)
            }
            for dayIndex in 0..<3 {
                var batch: [(report: Report, classes: [DataClass])] = []
                for d in devices {
                    for q in 0..<6 {
                        let endMs: Int64 = t0 + Int64(dayIndex) * day + Int64(q) * 3_600_000 + 60_000
                        batch.append(next(d, endMs: endMs))
                    }
                }
                _ = try await store.ingest(batch, receivedAtMs: t0)
            }
            var before: [String: [StoredWindow]] = [:]
            for d in devices {
                before[d] = try await store.windows(device: d, metric: nil, fromMs: 0, toMs: .max, cutoffs: StoreConformanceTests.keepAll, limit: .max)
            }
            #expect(before["idx-0"]?.count == 18 * StorageTests.sample().count)

            // Migration v2 on a database with data: the new indexes exist on the parents only, the old ones stay.
            try await store.migrate()
            var indexes = try Self.reportIndexes(pg)
            #expect(indexes["report_data_device"] != nil && indexes["report_data_recent"] != nil && indexes["reports_window_end"] != nil,
                    "the old indexes serve until the new ones are built: \(indexes)")
            #expect(indexes["report_data_by_device"]?.hasSuffix("|false") == true, "\(indexes)")

            // Built while another task keeps ingesting (a CREATE INDEX without CONCURRENTLY would hold it).
            var later: [[(report: Report, classes: [DataClass])]] = []
            for i in 0..<40 {
                let endMs: Int64 = t0 + 2 * day + 7 * 3_600_000 + Int64(i) * 1000
                later.append(devices.map { next($0, endMs: endMs) })
            }
            async let written = Self.ingestEach(later, into: store)
            // The purge does it (after dropping what expired: nothing here).
            _ = try await store.purge(cutoffs: StoreConformanceTests.keepAll, dryRun: false)
            let stored = try await written
            #expect(stored == 40 * devices.count)

            indexes = try Self.reportIndexes(pg)
            for old in PostgresStore.replacedIndexes { #expect(indexes[old] == nil, "\(old) is dropped: \(indexes)") }
            #expect(indexes["report_data_by_device"] == "report_data|btree|true")
            #expect(indexes["report_data_by_end"] == "report_data|brin|true")
            #expect(indexes["reports_by_end"] == "reports|brin|true")
            // Every day table: one device btree, one BRIN, nothing else.
            let dayTables = Set(indexes.values.map { $0.split(separator: "|")[0] }.filter { $0.hasPrefix("report_data_link_2") })
            #expect(dayTables.count >= 3)
            for table in dayTables {
                let methods = indexes.values.filter { $0.hasPrefix(table + "|") }.map { $0.split(separator: "|")[1] }.sorted()
                #expect(methods == ["brin", "btree"], "\(table): \(methods)")
            }
            #expect(!indexes.values.contains { $0.hasSuffix("|false") }, "every index valid: \(indexes)")

            // Every value is still returned, and the reports written meanwhile are there too.
            for d in devices {
                let after = try await store.windows(device: d, metric: nil, fromMs: 0, toMs: .max, cutoffs: StoreConformanceTests.keepAll, limit: .max)
                #expect(after.count == (18 + 40) * StorageTests.sample().count, "\(d)")
                let lost = before[d]!.filter { !after.contains($0) }
                #expect(lost.isEmpty, "\(d): \(lost.count) windows stored before the upkeep are not returned after it")
            }

            // A day made afterwards gets only the new indexes.
            _ = try await store.ingest([next("idx-0", endMs: t0 + 5 * day + 60_000)], receivedAtMs: t0)
            let fresh = try PostgresStore.dayPartition("link", windowEndMs: t0 + 5 * day + 60_000).name
            let methods = try Self.reportIndexes(pg).values.filter { $0.hasPrefix(fresh + "|") }.map { $0.split(separator: "|")[1] }.sorted()
            #expect(methods == ["brin", "btree"], "\(fresh): \(methods)")
            #expect(try await store.convergeIndexes(), "nothing left to do")
        }
    }

    /// The upkeep's catalog changes wait at most 2 s for their locks. A reader that sits idle in a
    /// transaction holds `report_data` (as an operator's forgotten session would): building the new
    /// indexes concurrently goes on, but dropping the old ones would wait for that reader, and every
    /// ingest would queue behind the drop. The upkeep gives up instead, reports keep being stored, and
    /// the next purge finishes the job once the reader is gone.
    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func theUpkeepGivesUpOnALockHeldByAnIdleTransactionAndFinishesLater() async throws {
        let day = StoreConformanceTests.day, t0 = StoreConformanceTests.t0
        let devices = ["held-0", "held-1"]
        try await Self.withCollector04Store(devices: devices, logLevel: .error) { store, pg in
            var seq: UInt64 = 0
            func batch(endMs: Int64) -> [(report: Report, classes: [DataClass])] {
                devices.map { d in seq += 1; return StoreConformanceTests.report(d, seq: seq, endMs: endMs) }
            }
            for dayIndex in 0..<2 { _ = try await store.ingest(batch(endMs: t0 + Int64(dayIndex) * day + 60_000), receivedAtMs: t0) }
            try await store.migrate()

            let reader = try TestDatabases.HeldTransaction(pg, "SELECT count(*) FROM report_data;")
            // Should the upkeep wait for the reader after all, the reader ends after 60 s and the test fails on
            // the time taken below rather than hanging.
            let release = Task { try? await Task.sleep(for: .seconds(60)); reader.finish() }
            defer { release.cancel(); reader.finish() }
            let clock = ContinuousClock()
            let started = clock.now
            async let converged = store.convergeIndexes()
            // Ingest goes on meanwhile: at most the 2 s a catalog change may wait delays it.
            try await Task.sleep(for: .milliseconds(200))
            let during = try await store.ingest(batch(endMs: t0 + day + 120_000), receivedAtMs: t0)
            #expect(during.allSatisfy { if case .stored = $0 { true } else { false } }, "stored while the upkeep waited: \(during)")
            let done = try await converged
            let took = clock.now - started
            #expect(!done, "the drop cannot have happened while the reader holds report_data")
            #expect(took < .seconds(30), "the upkeep gave up after its 2 s lock timeout instead of waiting for the reader: took \(took)")
            var indexes = try Self.reportIndexes(pg)
            #expect(indexes["report_data_device"] != nil, "the old indexes still serve: \(indexes)")
            // A class's new index stays invalid until every day's is attached; no day table holds a half-built one.
            let dayIndexes = indexes.values.filter { $0.split(separator: "|")[0].split(separator: "_").last?.count == 8 }
            #expect(!dayIndexes.isEmpty && !dayIndexes.contains { $0.hasSuffix("|false") }, "no day table has an invalid index: \(indexes)")

            reader.finish()
            #expect(try await store.convergeIndexes(), "done once the reader is gone")
            indexes = try Self.reportIndexes(pg)
            for old in PostgresStore.replacedIndexes { #expect(indexes[old] == nil, "\(old) is dropped: \(indexes)") }
            for d in devices {
                let windows = try await store.windows(device: d, metric: nil, fromMs: 0, toMs: .max, cutoffs: StoreConformanceTests.keepAll, limit: .max)
                #expect(windows.count == 3 * StorageTests.sample().count, "\(d): every report is returned")
            }
        }
    }

    /// Ingests each batch in turn; the number of reports stored.
    static func ingestEach(_ batches: [[(report: Report, classes: [DataClass])]], into store: PostgresStore) async throws -> Int {
        var stored = 0
        for batch in batches {
            stored += try await store.ingest(batch, receivedAtMs: StoreConformanceTests.t0).filter { if case .stored = $0 { true } else { false } }.count
        }
        return stored
    }

    /// A new database gets the lean indexes from its migrations: nothing to build later.
    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func aNewDatabaseStartsWithTheLeanIndexes() async throws {
        try await TestDatabases.withStore(.postgres) { store, configuration in
            let pg = try #require(configuration.postgres)
            let indexes = try Self.reportIndexes(pg)
            for old in PostgresStore.replacedIndexes { #expect(indexes[old] == nil, "\(old): \(indexes)") }
            #expect(indexes["report_data_by_device"] == "report_data|btree|true")
            #expect(indexes["reports_by_end"] == "reports|brin|true")
            #expect(indexes.count > 4, "today's and tomorrow's partitions are indexed: \(indexes)")
        }
    }
}

/// ``GroupCommit`` under steady load: a writer writes the one transaction that holds its own reports and
/// hands the writing on, so no caller waits for a queue that other callers keep filling.
@Suite struct GroupCommitTests {
    final class Count: Sendable { let value = Atomic<Int>(0) }

    @Test func aWriterWritesOnlyTheTransactionHoldingItsReports() async throws {
        let commits = GroupCommit()
        let transactions = Count()
        // Eight callers submitting one after another, as eight requests in flight do.
        let results = try await withThrowingTaskGroup(of: [(seq: UInt64, writes: Int, outcome: IngestOutcome)].self) { group in
            for caller in 0..<8 {
                group.addTask {
                    var out: [(seq: UInt64, writes: Int, outcome: IngestOutcome)] = []
                    for i in 0..<25 {
                        let seq = UInt64(caller * 1000 + i + 1)
                        let report = Report(device: "gc-\(caller)", seq: seq, windowStartMs: 0, windowEndMs: 300_000, keyEpoch: 1,
                                            agentVersion: "test", series: [])
                        let writes = Count()
                        let outcomes = try await commits.submit([(report, [], 0)]) { entries in
                            writes.value.add(1, ordering: .relaxed)
                            transactions.value.add(1, ordering: .relaxed)
                            try await Task.sleep(for: .milliseconds(1))
                            return entries.map { .stored(series: Int($0.report.seq)) }
                        }
                        out.append((seq, writes.value.load(ordering: .relaxed), outcomes[0]))
                    }
                    return out
                }
            }
            var all: [(seq: UInt64, writes: Int, outcome: IngestOutcome)] = []
            for try await part in group { all += part }
            return all
        }
        #expect(results.count == 200)
        #expect(results.allSatisfy { $0.outcome == .stored(series: Int($0.seq)) }, "each caller gets the outcome of its own report")
        let most = results.map(\.writes).max() ?? 0
        #expect(most <= 1, "a caller wrote \(most) transactions: it waited for others' reports too")
        let total = transactions.value.load(ordering: .relaxed)
        #expect(total < 200, "reports were grouped: \(total) transactions for 200 reports")
        print("group commit: 200 reports of 8 callers in \(total) transactions; the most a caller wrote: \(most)")
    }
}
