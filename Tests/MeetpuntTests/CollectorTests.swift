import CollectorCore
import Foundation
import GRDB
import GzipCodec
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import TelemetryModel

/// A collector on a real HTTP server (Hummingbird's live test mode) over a fresh SQLite file, with a clock
/// the test moves.
final class CollectorFixture: @unchecked Sendable {
    let directory: URL
    let store: SQLiteStore
    let api: CollectorAPI
    private let clock = TestClock(CollectorFixture.start)
    var deviceTokens: [String: String] = [:]
    var operatorToken = ""
    var adminToken = ""

    static let start: Int64 = 1_763_884_800_000  // 2025-11-23T08:00:00Z

    init(devices: [String] = ["dev-a", "dev-b"]) async throws {
        directory = try TestSupport.tempDirectory()
        store = try SQLiteStore(path: directory.appendingPathComponent("collector.sqlite").path)
        var config = CollectorConfiguration(sqlitePath: directory.appendingPathComponent("collector.sqlite").path, retentionFile: "")
        config.port = 0
        config.maxBodyBytes = 64 * 1024
        config.maxDecompressedBytes = 256 * 1024
        config.guardSSIDs = ["HomeNet-5G"]
        var logger = Logger(label: "test.collector")
        logger.logLevel = .warning
        let clock = self.clock
        api = CollectorAPI(store: store, policy: .defaults, configuration: config, clock: { clock.now }, logger: logger)
        for d in devices {
            _ = try await store.addDevice(d, nowMs: clock.now)
            deviceTokens[d] = try await api.issueToken(role: .device, name: d, device: d).0
        }
        operatorToken = try await api.issueToken(role: .operator_, name: "noc-alice", device: nil).0
        adminToken = try await api.issueToken(role: .admin, name: "dpo-bob", device: nil).0
    }

    var now: Int64 { clock.now }

    func advance(days: Int) { clock.advance(by: Int64(days) * 86_400_000) }

    func app() throws -> some ApplicationProtocol { try buildApplication(api: api) }

    /// Rows of `table` (for the device, when given), read straight from the SQLite file.
    /// Read-only, and waiting up to 5 s for a lock: a second connection to the store's WAL database can meet
    /// SQLITE_BUSY for a moment (while the pool checkpoints). A row count read here failed once in a full
    /// run and never again alone; a busy database is the one cause found for that.
    func rows(_ table: String, device: String? = nil) throws -> Int {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        let q = try DatabaseQueue(path: directory.appendingPathComponent("collector.sqlite").path, configuration: configuration)
        return try q.read { db in
            if let device {
                return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table) WHERE device_id = ?", arguments: [device]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0
        }
    }

    /// Series windows stored (for the device, when given): each report-and-class row counts its series.
    func seriesStored(device: String? = nil) throws -> Int {
        let q = try DatabaseQueue(path: directory.appendingPathComponent("collector.sqlite").path)
        return try q.read { db in
            if let device {
                return try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(series_count), 0) FROM report_data WHERE device_id = ?", arguments: [device]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(series_count), 0) FROM report_data") ?? 0
        }
    }

    func tablesWithDeviceColumn() throws -> Set<String> {
        let q = try DatabaseQueue(path: directory.appendingPathComponent("collector.sqlite").path)
        return try q.read { db in
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'")
            return Set(try tables.filter { t in try db.columns(in: t).contains { $0.name == "device_id" } })
        }
    }

    func report(device: String = "dev-a", seq: UInt64 = 1, endMs: Int64? = nil, series: [Series]? = nil) -> Report {
        let end = endMs ?? now - 1000
        return Report(device: device, seq: seq, windowStartMs: end - 60_000, windowEndMs: end, keyEpoch: 683, agentVersion: "0.1.0",
                      series: series ?? [Self.series("link.rx_bytes", "bytes", ["interface": "eth0"], 1200),
                                         Self.series("lan.clients", "clients", ["interface": "br-lan"], 3)])
    }

    static func series(_ metric: String, _ unit: String, _ labels: [String: String], _ v: Double) -> Series {
        Series(metric: metric, unit: unit, labels: labels, count: 1, min: v, max: v, mean: v, last: v, sum: v, sketch: nil)
    }

    static func json(_ report: Report) throws -> ByteBuffer { ByteBuffer(bytes: try JSONEncoder().encode(report)) }

    static func headers(_ token: String?, gzip: Bool = false) -> HTTPFields {
        var h: HTTPFields = [.contentType: "application/json"]
        if let token { h[.authorization] = "Bearer \(token)" }
        if gzip { h[.contentEncoding] = "gzip" }
        return h
    }
}

/// Milliseconds since the epoch that only move when the test says so.
final class TestClock: @unchecked Sendable {  // `value` is guarded by `lock`
    private let lock = NSLock()
    private var value: Int64
    init(_ start: Int64) { value = start }
    var now: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
    func advance(by ms: Int64) {
        lock.lock()
        value += ms
        lock.unlock()
    }
}

struct ErrorBody: Decodable {
    struct Inner: Decodable {
        let code: String
        let message: String
        let path: String?
    }
    let error: Inner
}

func decodeError(_ r: TestResponse) throws -> ErrorBody.Inner {
    try JSONDecoder().decode(ErrorBody.self, from: Data(buffer: r.body)).error
}

@Suite struct IngestTests {
    @Test func aValidGzipReportIsStoredOnceAndDuplicatesAreAcknowledged() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let body = ByteBuffer(bytes: try Gzip.compress(Array(JSONEncoder().encode(f.report()))))
            for attempt in 0..<2 {
                let r = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), body: body)
                #expect(r.status == .ok)
                let ack = try JSONDecoder().decode(ReportAcknowledgement.self, from: Data(buffer: r.body))
                #expect(ack.duplicate == (attempt == 1))
            }
        }
        #expect(try f.rows("reports") == 1)
        #expect(try f.seriesStored() == 2)
    }

    /// One bad request and what the answer must say. Nothing is stored and the server stays healthy.
    struct BadCase: Sendable, CustomTestStringConvertible {
        let name: String
        let status: HTTPResponse.Status
        let code: String
        let messageContains: String
        let request: @Sendable (CollectorFixture) throws -> (HTTPFields, ByteBuffer)
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "malformed JSON", status: .badRequest, code: "malformed_report", messageContains: "not valid JSON") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), ByteBuffer(string: "{\"schema\": 1, \"device\": "))
        },
        BadCase(name: "missing token", status: .unauthorized, code: "missing_token", messageContains: "Bearer") { f in
            (CollectorFixture.headers(nil), try CollectorFixture.json(f.report()))
        },
        BadCase(name: "wrong token", status: .unauthorized, code: "invalid_token", messageContains: "not valid") { f in
            (CollectorFixture.headers("mpt_" + String(repeating: "0", count: 64)), try CollectorFixture.json(f.report()))
        },
        BadCase(name: "token of another device", status: .forbidden, code: "wrong_device", messageContains: "writes for device dev-b") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-b"]), try CollectorFixture.json(f.report(device: "dev-a")))
        },
        BadCase(name: "operator token writing", status: .forbidden, code: "forbidden", messageContains: "only device tokens") { f in
            (CollectorFixture.headers(f.operatorToken), try CollectorFixture.json(f.report()))
        },
        BadCase(name: "oversized body", status: .contentTooLarge, code: "body_too_large", messageContains: "exceeds") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), ByteBuffer(string: String(repeating: " ", count: 100 * 1024)))
        },
        BadCase(name: "gzip bomb", status: .contentTooLarge, code: "body_too_large", messageContains: "decompressed body exceeds") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), ByteBuffer(bytes: try Gzip.compress([UInt8](repeating: 0x20, count: 4 << 20))))
        },
        BadCase(name: "corrupt gzip", status: .badRequest, code: "bad_encoding", messageContains: "gzip") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), ByteBuffer(string: "not gzip at all"))
        },
        BadCase(name: "unknown schema version", status: .unprocessableContent, code: "invalid_report", messageContains: "unknown schema version 99") { f in
            var r = f.report()
            r.schema = 99
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(r))
        },
        BadCase(name: "window in the future", status: .unprocessableContent, code: "invalid_report", messageContains: "in the future") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(endMs: f.now + 3_600_000)))
        },
        BadCase(name: "window end before start", status: .unprocessableContent, code: "invalid_report", messageContains: "is not after window start") { f in
            var r = f.report()
            r.windowStartMs = r.windowEndMs + 1
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(r))
        },
        BadCase(name: "infinite value", status: .badRequest, code: "malformed_report", messageContains: "not valid JSON") { f in
            let text = String(decoding: try JSONEncoder().encode(f.report()), as: UTF8.self).replacingOccurrences(of: "1200", with: "1e999")
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), ByteBuffer(string: text))
        },
        BadCase(name: "NaN value", status: .badRequest, code: "malformed_report", messageContains: "not valid JSON") { f in
            let text = String(decoding: try JSONEncoder().encode(f.report()), as: UTF8.self).replacingOccurrences(of: "1200", with: "NaN")
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), ByteBuffer(string: text))
        },
        BadCase(name: "absurd label count", status: .unprocessableContent, code: "invalid_report", messageContains: "labels; at most 8") { f in
            var labels = ["interface": "eth0"]
            for i in 0..<50 { labels["l\(i)"] = "x" }
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]),
                    try CollectorFixture.json(f.report(series: [CollectorFixture.series("link.rx_bytes", "bytes", labels, 1)])))
        },
        BadCase(name: "unknown metric", status: .unprocessableContent, code: "invalid_report", messageContains: "unknown metric") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]),
             try CollectorFixture.json(f.report(series: [CollectorFixture.series("link.rx_bananas", "bytes", ["interface": "eth0"], 1)])))
        },
        BadCase(name: "wrong unit", status: .unprocessableContent, code: "invalid_report", messageContains: "has unit bytes") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]),
             try CollectorFixture.json(f.report(series: [CollectorFixture.series("link.rx_bytes", "bits", ["interface": "eth0"], 1)])))
        },
        BadCase(name: "raw MAC address in a label", status: .unprocessableContent, code: "invalid_report", messageContains: "raw MAC address") { f in
            let labels = ["interface": "br-lan", "client": "00:1b:21:3a:4f:5e", "mac_kind": "global", "oui": "00-1B-21"]
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]),
                    try CollectorFixture.json(f.report(series: [CollectorFixture.series("lan.client.reachable", "boolean", labels, 1)])))
        },
        BadCase(name: "configured SSID in a label", status: .unprocessableContent, code: "invalid_report", messageContains: "raw SSID") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]),
             try CollectorFixture.json(f.report(series: [CollectorFixture.series("link.rx_bytes", "bytes", ["interface": "HomeNet-5G"], 1)])))
        },
        BadCase(name: "window start before 1970 (overflow bait)", status: .unprocessableContent, code: "invalid_report", messageContains: "before 1970") { f in
            var r = f.report()
            r.windowStartMs = .min
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(r))
        },
        BadCase(name: "sequence beyond Int64", status: .unprocessableContent, code: "invalid_report", messageContains: "exceeds") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(seq: .max)))
        },
        BadCase(name: "free text as agent version", status: .unprocessableContent, code: "invalid_report", messageContains: "not free text") { f in
            var r = f.report()
            r.agentVersion = "call me at home"
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(r))
        },
        BadCase(name: "sketch counts that overflow", status: .unprocessableContent, code: "invalid_report", messageContains: "more than 2^64") { f in
            var s = CollectorFixture.series("link.rx_rate", "bits_per_second", ["interface": "eth0"], 1)
            s.sketch = try JSONDecoder().decode(QuantileSketch.self, from: Data(#"{"alpha":0.01,"zero":0,"index":[1,2],"count":[18446744073709551615,5]}"#.utf8))
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(series: [s])))
        },
        BadCase(name: "claimed device id that is not an id", status: .unprocessableContent, code: "invalid_report", messageContains: "device id must be") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(device: String(repeating: "x", count: 20_000))))
        },
        BadCase(name: "trailing data after the gzip stream", status: .badRequest, code: "bad_encoding", messageContains: "follow the gzip stream") { f in
            let body = try Gzip.compress(Array(JSONEncoder().encode(f.report()))) + Array("extra".utf8)
            return (CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), ByteBuffer(bytes: body))
        },
        BadCase(name: "sequence number 0", status: .unprocessableContent, code: "invalid_report", messageContains: "start at 1") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(seq: 0)))
        },
        BadCase(name: "last outside [min, max]", status: .unprocessableContent, code: "invalid_report", messageContains: "lies outside [min") { f in
            var s = CollectorFixture.series("link.rx_bytes", "bytes", ["interface": "eth0"], 1200)
            s.last = 5000
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(series: [s])))
        },
        BadCase(name: "counter delta with a negative sum", status: .unprocessableContent, code: "invalid_report", messageContains: "cannot be negative") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]),
             try CollectorFixture.json(f.report(series: [CollectorFixture.series("link.rx_bytes", "bytes", ["interface": "eth0"], -1200)])))
        },
        BadCase(name: "sketch values outside [min, max]", status: .unprocessableContent, code: "invalid_report", messageContains: "fall outside [min") { f in
            var s = CollectorFixture.series("link.rx_rate", "bits_per_second", ["interface": "eth0"], 1000)
            var sketch = QuantileSketch()
            sketch.add(9_000_000)
            s.sketch = sketch
            return (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(series: [s])))
        },
        BadCase(name: "data older than its class allows", status: .unprocessableContent, code: "expired", messageContains: "data class clients is kept at most 90 days") { f in
            (CollectorFixture.headers(f.deviceTokens["dev-a"]), try CollectorFixture.json(f.report(endMs: f.now - 100 * 86_400_000)))
        },
    ]

    @Test(arguments: badCases)
    func badInputIsRefusedWithAClearMessageAndNothingIsStored(c: BadCase) async throws {
        let f = try await CollectorFixture()
        let (headers, body) = try c.request(f)
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/reports", method: .post, headers: headers, body: body)
            #expect(r.status == c.status, "\(String(buffer: r.body))")
            if r.status.code != 413 || r.headers[.contentType] == "application/json" {
                let e = try decodeError(r)
                #expect(e.code == c.code)
                #expect(e.message.contains(c.messageContains), "\(e.message)")
            }
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok, "the server stays healthy")
            // A good report still goes through afterwards.
            let ok = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-b"]),
                                              body: try CollectorFixture.json(f.report(device: "dev-b", seq: 7)))
            #expect(ok.status == .ok)
        }
        #expect(try f.rows("reports", device: "dev-a") == 0, "nothing of a rejected report is stored")
        #expect(try f.seriesStored(device: "dev-a") == 0)
        #expect(try f.rows("reports", device: "dev-b") == 1)
    }

    @Test func rejectionsNameThePathOfTheProblem() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]),
                                             body: try CollectorFixture.json(f.report(series: [
                                                 CollectorFixture.series("link.rx_bytes", "bytes", ["interface": "eth0"], 1),
                                                 CollectorFixture.series("link.mtu", "bytes", ["interface": "bad name!"], 1500),
                                             ])))
            let e = try decodeError(r)
            #expect(e.path == "series[1].labels.interface")
        }
    }
}

@Suite struct RetentionTests {
    @Test func expiredDataIsNeverReturnedAndThePurgeDeletesIt() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]),
                                             body: try CollectorFixture.json(f.report()))
            #expect(r.status == .ok)
            func windows(_ metric: String) async throws -> Int {
                let r = try await client.execute(uri: "/v1/devices/dev-a/series?metric=\(metric)", method: .get,
                                                 headers: CollectorFixture.headers(f.operatorToken))
                #expect(r.status == .ok)
                let body = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any]
                return (body?["windows"] as? [Any])?.count ?? -1
            }
            #expect(try await windows("lan.clients") == 1)
            #expect(try await windows("link.rx_bytes") == 1)

            // 91 days on: the clients class (90 days) has expired, the link class (395 days) has not.
            f.advance(days: 91)
            #expect(try await windows("lan.clients") == 0, "expired rows are not returned, even before a purge")
            #expect(try await windows("link.rx_bytes") == 1)
            #expect(try f.seriesStored() == 2, "not yet purged")

            let dry = await PurgeService(api: f.api, interval: .seconds(600)).purgeOnce(dryRun: true)
            #expect(dry["clients"] == 1)
            #expect(try f.seriesStored() == 2, "a dry run deletes nothing")
            let counts = await PurgeService(api: f.api, interval: .seconds(600)).purgeOnce()
            #expect(counts["clients"] == 1 && counts["link"] == 0)
            #expect(try f.seriesStored() == 1)

            f.advance(days: 400)
            #expect(try await windows("link.rx_bytes") == 0)
            let later = await PurgeService(api: f.api, interval: .seconds(600)).purgeOnce()
            #expect(later["link"] == 1 && later["reports"] == 1)
            #expect(try f.seriesStored() == 0 && f.rows("reports") == 0)
        }
    }
}

@Suite struct SubjectRightsTests {
    @Test func eraseLeavesNoRowsForTheDeviceAndOthersUntouched() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            for (device, seq) in [("dev-a", 1), ("dev-a", 2), ("dev-b", 1)] {
                let r = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens[device]),
                                                 body: try CollectorFixture.json(f.report(device: device, seq: UInt64(seq))))
                #expect(r.status == .ok)
            }
            var headers = CollectorFixture.headers(f.adminToken)
            headers[HTTPField.Name("X-Meetpunt-Reason")!] = "GDPR art. 17 request #4711"
            let r = try await client.execute(uri: "/v1/devices/dev-a/data", method: .delete, headers: headers)
            #expect(r.status == .ok)
            // Every table with a device_id column, found in the schema (not taken from the code under test),
            // except those that must keep the device: its registration, its tokens, the audit trail, and the
            // settings an operator set for it (configuration, not data about anyone).
            let tables = try f.tablesWithDeviceColumn().subtracting(["tokens", "audit", "device_settings"])
            #expect(tables.isSuperset(of: ["report_data", "reports"]))
            for table in tables {
                #expect(try f.rows(table, device: "dev-a") == 0, "\(table) holds no rows of the erased device")
            }
            #expect(try f.rows("devices") == 2, "the device stays registered")
            #expect(try f.seriesStored(device: "dev-b") == 2)
            #expect(try f.rows("reports", device: "dev-b") == 1)
            // The device can report again.
            let again = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]),
                                                 body: try CollectorFixture.json(f.report(device: "dev-a", seq: 3)))
            #expect(again.status == .ok)
        }
        let audit = try await f.store.audit(device: "dev-a", sinceMs: 0, limit: 10)
        #expect(audit.contains { $0.action == "erase device data" && $0.reason == "GDPR art. 17 request #4711" && $0.actor == "admin:dpo-bob" })
    }

    @Test func exportRoundTripsEveryClassWithItsRetention() async throws {
        let f = try await CollectorFixture()
        let report = f.report()
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/reports", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]),
                                             body: try CollectorFixture.json(report))
            #expect(r.status == .ok)
            let e = try await client.execute(uri: "/v1/devices/dev-a/export", method: .get, headers: CollectorFixture.headers(f.adminToken))
            #expect(e.status == .ok)
            let decoder = JSONDecoder()
            let export = try decoder.decode(DeviceExport.self, from: Data(buffer: e.body))
            #expect(Set(export.classes.keys) == ["link", "clients", "wifi", "traffic", "troubleshooting"])
            #expect(export.classes["clients"]?.retentionDays == 90)
            #expect(export.audit.retentionDays == 730)
            let exported = export.classes.values.flatMap(\.windows)
            for s in report.series {
                let w = try #require(exported.first { $0.metric == s.metric })
                #expect(w.labels == s.labels && w.sum == s.sum && w.count == s.count && w.unit == s.unit)
                #expect(w.windowEndMs == report.windowEndMs)
            }
            #expect(export.audit.entries.contains { $0.action == "export device data" })
            let csv = try await client.execute(uri: "/v1/devices/dev-a/export?format=csv&metric=link.rx_bytes", method: .get,
                                               headers: CollectorFixture.headers(f.adminToken))
            let lines = String(buffer: csv.body).split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines[1].hasPrefix("link.rx_bytes,bytes,"))
        }
    }
}

@Suite struct RoleTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let role: String
        let method: HTTPRequest.Method
        let uri: String
        let action: String
        var testDescription: String { "\(role) \(method) \(uri)" }
    }

    static let refusals: [Case] = [
        Case(role: "device", method: .get, uri: "/v1/devices", action: "list devices"),
        Case(role: "device", method: .get, uri: "/v1/devices/dev-a/series", action: "read series"),
        Case(role: "device", method: .get, uri: "/v1/devices/dev-a/export", action: "export device data"),
        Case(role: "device", method: .delete, uri: "/v1/devices/dev-a/data", action: "erase device data"),
        Case(role: "device", method: .post, uri: "/v1/tokens", action: "manage tokens"),
        Case(role: "device", method: .get, uri: "/v1/audit", action: "read audit trail"),
        Case(role: "operator", method: .get, uri: "/v1/devices/dev-a/export", action: "export device data"),
        Case(role: "operator", method: .delete, uri: "/v1/devices/dev-a/data", action: "erase device data"),
        Case(role: "operator", method: .post, uri: "/v1/tokens", action: "manage tokens"),
        Case(role: "operator", method: .delete, uri: "/v1/tokens/1", action: "manage tokens"),
        Case(role: "operator", method: .get, uri: "/v1/audit", action: "read audit trail"),
        Case(role: "operator", method: .post, uri: "/v1/reports", action: "write reports"),
        Case(role: "admin", method: .post, uri: "/v1/reports", action: "write reports"),
    ]

    @Test(arguments: refusals)
    func eachRoleIsRefusedWhatItMustNotDoAndTheRefusalIsAudited(c: Case) async throws {
        let f = try await CollectorFixture()
        let token = c.role == "device" ? f.deviceTokens["dev-a"]! : c.role == "operator" ? f.operatorToken : f.adminToken
        try await f.app().test(.live) { client in
            let body = c.method == .post ? (c.uri == "/v1/reports" ? try CollectorFixture.json(f.report()) : ByteBuffer(string: "{\"role\":\"admin\",\"name\":\"x\"}")) : nil
            let r = try await client.execute(uri: c.uri, method: c.method, headers: CollectorFixture.headers(token), body: body)
            #expect(r.status == .forbidden)
        }
        let audit = try await f.store.audit(device: nil, sinceMs: 0, limit: 100)
        #expect(audit.contains { $0.outcome == "denied" && $0.action == c.action && $0.actor.hasPrefix(c.role + ":") }, "\(audit)")
        #expect(try f.rows("tokens") == 4, "no token was created")
    }

    @Test func revokedTokensAreRefusedAndOperatorReadsAreAudited() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            var headers = CollectorFixture.headers(f.operatorToken)
            headers[HTTPField.Name("X-Meetpunt-Reason")!] = "ticket NOC-12"
            let read = try await client.execute(uri: "/v1/devices/dev-a/series?metric=link.rx_bytes", method: .get, headers: headers)
            #expect(read.status == .ok)
            let created = try await client.execute(uri: "/v1/tokens", method: .post, headers: CollectorFixture.headers(f.adminToken),
                                                   body: ByteBuffer(string: "{\"role\":\"operator\",\"name\":\"noc-carol\"}"))
            #expect(created.status == .created)
            let body = try JSONSerialization.jsonObject(with: Data(buffer: created.body)) as! [String: Any]
            let token = body["token"] as! String, id = body["id"] as! Int
            #expect(try await client.execute(uri: "/v1/devices", method: .get, headers: CollectorFixture.headers(token)).status == .ok)
            #expect(try await client.execute(uri: "/v1/tokens/\(id)", method: .delete, headers: CollectorFixture.headers(f.adminToken)).status == .ok)
            let after = try await client.execute(uri: "/v1/devices", method: .get, headers: CollectorFixture.headers(token))
            #expect(after.status == .unauthorized)
            #expect(try decodeError(after).code == "revoked_token")
        }
        let audit = try await f.store.audit(device: nil, sinceMs: 0, limit: 100)
        #expect(audit.contains { $0.action == "read series" && $0.deviceID == "dev-a" && $0.reason == "ticket NOC-12" && $0.actor == "operator:noc-alice" })
        #expect(audit.contains { $0.action == "token add" && $0.actor == "admin:dpo-bob" })
        #expect(audit.contains { $0.action == "token revoke" })
        #expect(audit.contains { $0.action == "list devices" && $0.actor == "operator:noc-carol" })
        // Tokens are stored only as hashes.
        let q = try DatabaseQueue(path: f.directory.appendingPathComponent("collector.sqlite").path)
        let stored = try await q.read { db in try Data.fetchAll(db, sql: "SELECT token_hash FROM tokens") }
        #expect(stored.allSatisfy { $0.count == 32 })
        #expect(!stored.contains { String(decoding: $0, as: UTF8.self).contains("mpt_") })
    }
}
