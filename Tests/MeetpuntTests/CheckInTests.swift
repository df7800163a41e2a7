import AgentConfig
import AgentCore
import CollectorCore
import Foundation
import GRDB
import GzipCodec
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TelemetryModel

/// Check-in: an operator sets a device's settings at the collector; the agent learns the version from its
/// next acknowledgement, fetches, validates and applies them without a restart, and refuses bad ones.
@Suite struct CheckInTests {
    static let badSettings: [(String, HTTPResponse.Status, String, String?)] = [
        (#"{"sampling": {"interval_seconds": 0}}"#, .unprocessableContent, "invalid_settings", "sampling.interval_seconds"),
        (#"{"sampling": {"interval_seconds": 7, "window_seconds": 60}}"#, .unprocessableContent, "invalid_settings", "sampling.window_seconds"),
        (#"{"samplers": {"capture": true}}"#, .unprocessableContent, "invalid_settings", "samplers.capture"),
        (#"{"sampling": {"intervall_seconds": 5}}"#, .badRequest, "malformed_settings", nil),
        (#"{"samplers": {"wifi": "off"}}"#, .badRequest, "malformed_settings", nil),
        ("not json", .badRequest, "malformed_settings", nil),
    ]

    /// Each bad settings body is refused with what and where, nothing is stored, the server stays healthy.
    @Test(arguments: badSettings)
    func badSettingsAreRefusedAndNothingIsStored(body: String, status: HTTPResponse.Status, code: String, path: String?) async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/devices/dev-a/config", method: .put, headers: CollectorFixture.headers(f.operatorToken),
                                             body: ByteBuffer(string: body))
            #expect(r.status == status, "\(body)")
            let e = try decodeError(r)
            #expect(e.code == code && e.path == path, "\(e)")
            let get = try await client.execute(uri: "/v1/config", method: .get, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]))
            #expect(get.status == .notFound)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test func settingsAreVersionedAuditedAndAnnouncedInEveryAcknowledgement() async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let put = { (token: String?, body: String) in
                try await client.execute(uri: "/v1/devices/dev-a/config", method: .put, headers: CollectorFixture.headers(token), body: ByteBuffer(string: body))
            }
            #expect(try await put(f.deviceTokens["dev-a"], #"{"samplers": {"wifi": false}}"#).status == .forbidden, "a device cannot set its own settings")
            let first = try await put(f.operatorToken, #"{"samplers": {"wifi": false}}"#)
            #expect(first.status == .ok)
            #expect(try JSONDecoder().decode(AgentSettingsDocument.self, from: Data(buffer: first.body)).version == 1)
            let second = try await put(f.operatorToken, #"{"sampling": {"interval_seconds": 30, "window_seconds": 300}}"#)
            #expect(try JSONDecoder().decode(AgentSettingsDocument.self, from: Data(buffer: second.body)).version == 2)

            let get = try await client.execute(uri: "/v1/config", method: .get, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]))
            let doc = try JSONDecoder().decode(AgentSettingsDocument.self, from: Data(buffer: get.body))
            #expect(doc == AgentSettingsDocument(device: "dev-a", version: 2, settings: AgentSettings(intervalSeconds: 30, windowSeconds: 300)))
            let other = try await client.execute(uri: "/v1/config", method: .get, headers: CollectorFixture.headers(f.deviceTokens["dev-b"]))
            #expect(other.status == .notFound, "each device sees its own settings only")

            let ack = try await client.execute(uri: "/v1/report-batches", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true),
                                               body: try BatchIngestTests.batch([f.report(seq: 1)]))
            #expect(try BatchIngestTests.ack(ack).configVersion == 2)
            let ackB = try await client.execute(uri: "/v1/report-batches", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-b"], gzip: true),
                                                body: try BatchIngestTests.batch([f.report(device: "dev-b", seq: 1)]))
            #expect(try BatchIngestTests.ack(ackB).configVersion == nil)
        }
        let audited = try await f.store.audit(device: "dev-a", sinceMs: 0, limit: 100)
        #expect(audited.filter { $0.action == "change device settings" && $0.outcome == "ok" }.count == 2)
        #expect(audited.contains { $0.action == "change device settings" && $0.outcome == "denied" })
    }

    @Test func theAgentRefusesSettingsItCannotApplyAndKeepsItsOwn() throws {
        var config = try AgentConfiguration.parse("device_id: d\ncollector: {url: https://x, token_file: /t}\n", file: "a.yaml")
        config.sampleIntervalSeconds = 10
        config.reportWindowSeconds = 60
        let settings = RuntimeSettings(configuration: config, available: ["link", "health"])
        #expect(settings.apply(AgentSettingsDocument(device: "d", version: 1, settings: AgentSettings(samplers: ["health": false]))) == nil)
        #expect(settings.current.enabled == ["link"] && settings.current.version == 1)
        let refusal = settings.apply(AgentSettingsDocument(device: "d", version: 2, settings: AgentSettings(samplers: ["wifi": true])))
        #expect(refusal?.contains("samplers.wifi") == true)
        let refusal2 = settings.apply(AgentSettingsDocument(device: "d", version: 3, settings: AgentSettings(intervalSeconds: 7)))
        #expect(refusal2?.contains("whole multiple") == true, "7 s does not divide the local 60 s window")
        #expect(settings.current.enabled == ["link"] && settings.current.version == 1 && settings.current.rejectedVersion == 3, "the old settings stay")
    }

    /// The whole path with real processes: set at the collector, applied by a running agent (window length
    /// and samplers change, no restart), a bad version refused and reported, kept across a restart.
    @Test func aRunningAgentAppliesNewSettingsWithoutARestart() throws {
        let collector = try CollectorProcess(device: "checkin-1")
        defer { collector.stop() }
        let dir = try TestSupport.tempDirectory()
        let config = dir.appendingPathComponent("agent.yaml").path
        try """
            device_id: checkin-1
            collector: {url: "http://127.0.0.1:\(collector.port)", token_file: \(collector.tokenFile), insecure_demo: true}
            state_dir: \(dir.path)/state
            sampling: {interval_seconds: 1, window_seconds: 1}
            link: {interfaces: ["lo"], include_loopback: true}
            lan_clients: {enabled: false}
            wifi: {enabled: false}
            shipping: {backoff_initial_ms: 100, backoff_max_seconds: 1}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let cli = "\(TestSupport.executable("meetpunt-collector")) device config checkin-1 --config \(collector.directory.path)/collector.yaml"
        let agent = try ChildProcess(TestSupport.executable("meetpunt-agent"), ["run", "--config", config])
        defer { agent.stop() }
        _ = try agent.waitFor("report spooled")
        func spooled() -> Int { agent.text.components(separatedBy: "report spooled").count - 1 }
        func waitForSpooled(_ n: Int) throws {
            let deadline = Date().addingTimeInterval(30)
            while spooled() < n, Date() < deadline { usleep(100_000) }
        }
        try TestSupport.sh(cli + #" --set '{"sampling": {"interval_seconds": 1, "window_seconds": 2}, "samplers": {"health": false}}'"#)
        _ = try agent.waitFor("remote settings applied")
        try waitForSpooled(spooled() + 4)
        try TestSupport.sh(cli + #" --set '{"samplers": {"wifi": true}}'"#)
        _ = try agent.waitFor("remote settings refused")
        try waitForSpooled(spooled() + 3)
        agent.process.terminate()
        #expect(try agent.waitForExit(timeout: 30) == 0)
        #expect(agent.text.contains("not started by the local configuration"), "the refusal says why")

        // What the collector holds, report by report.
        let q = try DatabaseQueue(path: collector.sqlitePath)
        struct Window { var seq: Int64; var lengthMs: Int64; var metrics: Set<String>; var configVersion: Double?; var rejected: Double? }
        let windows: [Window] = try q.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, MIN(window_start_ms) AS window_start_ms, MAX(window_end_ms) AS window_end_ms FROM report_data GROUP BY seq ORDER BY seq").map { r in
                let seq: Int64 = r["seq"]
                var series: [Series] = []
                for d in try Row.fetchAll(db, sql: "SELECT payload, codec, series_count FROM report_data WHERE seq = ?", arguments: [seq]) {
                    series += try SeriesCodec.decompress([UInt8](d["payload"] as Data), codec: d["codec"], seriesCount: d["series_count"])
                }
                let metrics = Set(series.map(\.metric))
                let value = { (m: String) -> Double? in series.first { $0.metric == m }?.last }
                return Window(seq: seq, lengthMs: (r["window_end_ms"] as Int64) - (r["window_start_ms"] as Int64), metrics: metrics,
                              configVersion: value("agent.config.version"), rejected: value("agent.config.rejected_version"))
            }
        }
        let before = windows.filter { $0.configVersion == 0 }
        let after = windows.filter { $0.configVersion == 1 }
        #expect(!before.isEmpty && after.count >= 4, "\(windows.map { ($0.seq, $0.configVersion) })")
        #expect(before.contains { $0.metrics.contains { $0.hasPrefix("system.") } }, "health ran before")
        #expect(after.dropFirst().allSatisfy { !$0.metrics.contains { $0.hasPrefix("system.") } }, "and not after")
        #expect(after.dropFirst().dropLast().allSatisfy { (1900...2100).contains($0.lengthMs) }, "2 s windows after: \(after.map(\.lengthMs))")
        #expect(windows.contains { $0.rejected == 2 && $0.configVersion == 1 }, "the refused version is reported, the old one stays")

        let restarted = try ChildProcess(TestSupport.executable("meetpunt-agent"), ["run", "--config", config, "--duration", "1"])
        #expect(try restarted.waitForExit(timeout: 30) == 0)
        #expect(restarted.text.contains("remote settings restored"), "\(restarted.text)")
    }
}
