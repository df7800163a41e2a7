@testable import AgentCore
import CollectorCore
import Foundation
import GzipCodec
import Hummingbird
import Logging
import Testing
import TelemetryModel

/// Real processes: `meetpunt-collector serve` on a random loopback port with a fresh SQLite file, and
/// `meetpunt-agent run` sampling veth pairs in this host's namespace.
@Suite(.enabled(if: TestSupport.canUseNetns, "needs root and iproute2 for veth pairs"))
struct EndToEndTests {
    static let collector = TestSupport.executable("meetpunt-collector")
    static let agent = TestSupport.executable("meetpunt-agent")

    /// A veth pair in this namespace that carries only the frames the test sends.
    final class VethPair {
        let a: String, b: String
        init(prefix: String) throws {
            a = prefix + "a"
            b = prefix + "b"
            try TestSupport.sh("ip link add \(a) type veth peer name \(b)")
            for i in [a, b] {
                try TestSupport.sh("ip link set \(i) addrgenmode none && ip link set \(i) up")
            }
        }
        deinit { _ = try? TestSupport.sh("ip link del \(a)", check: false) }
    }

    @Test func agentWindowsReachTheReadAPIWithTheKernelsCounts() async throws {
        let dir = try TestSupport.tempDirectory()
        let config = try TestSupport.collectorConfig(in: dir)
        try TestSupport.sh("\(Self.collector) device add e2e-1 --config \(config) --token-file \(dir.path)/device.token")
        let operatorToken = try TestSupport.sh("\(Self.collector) token add --role operator --name e2e-test --config \(config) 2>/dev/null")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try ChildProcess(Self.collector, ["serve", "--config", config])
        defer { server.stop() }
        let port = try #require(Int(try server.waitFor("listening on").split(separator: ":").last ?? ""))

        let veth = try VethPair(prefix: "mpe\(TestSupport.uniqueSuffix().prefix(4))")
        try """
            device_id: e2e-1
            collector: {url: "http://127.0.0.1:\(port)", token_file: \(dir.path)/device.token, insecure_demo: true}
            state_dir: \(dir.path)/agent-state
            sampling: {interval_seconds: 1, window_seconds: 2}
            link: {interfaces: ["\(veth.a)", "\(veth.b)"]}
            lan_clients: {enabled: false}
            """.write(toFile: dir.appendingPathComponent("agent.yaml").path, atomically: true, encoding: .utf8)

        let txBefore = try TestSupport.sysfsCounter(veth.a, "tx_bytes")
        let rxPacketsBefore = try TestSupport.sysfsCounter(veth.b, "rx_packets")
        // Stopped by SIGTERM once two more windows were spooled after the last frames, not by a timer: under
        // a loaded test run the frames must still fall inside the agent's life.
        let agent = try ChildProcess(Self.agent, ["run", "--config", dir.appendingPathComponent("agent.yaml").path, "--duration", "120"])
        _ = try agent.waitFor("sampling")
        try await Task.sleep(for: .milliseconds(1500))
        try RawFrames.send(interface: veth.a, count: 300, size: 500)
        try await Task.sleep(for: .seconds(2))
        try RawFrames.send(interface: veth.a, count: 200, size: 1000)
        let queued = { agent.text.components(separatedBy: "report spooled").count - 1 }
        let target = queued() + 2
        let deadline = Date().addingTimeInterval(60)
        while queued() < target, Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        agent.process.terminate()
        #expect(try agent.waitForExit(timeout: 60) == 0, "\(agent.text)")
        let txAfter = try TestSupport.sysfsCounter(veth.a, "tx_bytes")
        let rxPacketsAfter = try TestSupport.sysfsCounter(veth.b, "rx_packets")
        #expect(txAfter - txBefore == 350_000)

        func windows(_ metric: String, _ interface: String) throws -> [[String: Any]] {
            let json = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' 'http://127.0.0.1:\(port)/v1/devices/e2e-1/series?metric=\(metric)'")
            let body = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let all = try #require(body["windows"] as? [[String: Any]])
            return all.filter { ($0["labels"] as? [String: String])?["interface"] == interface }
        }
        let devices = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' http://127.0.0.1:\(port)/v1/devices")
        let reports = try #require(((try JSONSerialization.jsonObject(with: Data(devices.utf8)) as? [String: Any])?["devices"] as? [[String: Any]])?.first?["reports"] as? Int)
        #expect(reports >= 3, "at least three windows: the frames' two and the partial one at SIGTERM")

        let tx = try windows("link.tx_bytes", veth.a)
        #expect(tx.count == reports, "one link.tx_bytes window per report")
        let txTotal = tx.reduce(0.0) { $0 + ($1["sum"] as? Double ?? 0) }
        #expect(txTotal == Double(txAfter - txBefore), "the windows add up to the kernel's own counter")
        let rxPackets = try windows("link.rx_packets", veth.b).reduce(0.0) { $0 + ($1["sum"] as? Double ?? 0) }
        #expect(rxPackets == Double(rxPacketsAfter - rxPacketsBefore))
        #expect(rxPackets == 500)
        let speed = try windows("link.speed", veth.a)
        #expect(!speed.isEmpty && speed.allSatisfy { $0["last"] as? Double == 10000 })
        let rates = try windows("link.tx_rate", veth.a)
        #expect(rates.contains { ($0["max"] as? Double ?? 0) > 0 })
        #expect(rates.allSatisfy { $0["sketch"] != nil })

        // Issue 12, acceptance 5: on this host without Wi-Fi the agent says so once and samples the rest,
        // router health included.
        let wifiNotices = agent.text.split(separator: "\n").filter { $0.contains("wifi:") && $0.contains("no Wi-Fi on this host") }
        #expect(wifiNotices.count == 1, "one notice that nl80211 has no wireless interfaces:\n\(agent.text)")
        let memory = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' 'http://127.0.0.1:\(port)/v1/devices/e2e-1/series?metric=system.memory_available'")
        let memoryWindows = try #require((try JSONSerialization.jsonObject(with: Data(memory.utf8)) as? [String: Any])?["windows"] as? [[String: Any]])
        #expect(memoryWindows.count == reports, "router health was sampled and shipped in every window")
        #expect(memoryWindows.allSatisfy { ($0["last"] as? Double ?? 0) > 0 })

        let summary = try TestSupport.sh("\(Self.collector) summary --config \(config)")
        #expect(summary.contains("device e2e-1"))
        #expect(summary.contains("\(veth.a)"))
        #expect(summary.contains("10000 Mb/s"))
    }
}

/// Issue 9, acceptance 2: the agent sees real identifiers (LAN clients with known MACs in network
/// namespaces that talk to it, a configured SSID, an interface named like a MAC) and nothing that leaves
/// it carries any of them in any common spelling.
@Suite(.enabled(if: TestSupport.canUseNetns, "needs root, iproute2 and ping for LAN peers"),
       .enabled(if: FileManager.default.fileExists(atPath: "/proc/sys/net/ipv6"), "the LAN peers talk over IPv6 link-local"))
struct PrivacyEndToEndTests {
    static let clientMACs = ["00:1b:21:3a:4f:5e", "da:a1:19:6b:22:07"]
    static let ssid = "HomeNet-5G"
    static let macNamedInterface = "001b213a4f5e"

    /// Everything received by the collector, as received.
    final class Recorder: @unchecked Sendable {  // guarded by `lock`
        private let lock = NSLock()
        private var raw: [[UInt8]] = []
        func add(_ b: [UInt8]) {
            lock.lock()
            raw.append(b)
            lock.unlock()
        }
        var bodies: [[UInt8]] {
            lock.lock()
            defer { lock.unlock() }
            return raw
        }
    }

    static func forbiddenStrings() -> [String] {
        clientMACs.flatMap { IdentifierGuardTests.spellings($0) } + [ssid, ssid.lowercased(), ssid.uppercased()]
    }

    static func hits(in text: String) -> [String] {
        forbiddenStrings().filter { text.range(of: $0, options: .caseInsensitive) != nil }
    }

    @Test func nothingLeavingTheAgentCarriesARawIdentifier() async throws {
        let dir = try TestSupport.tempDirectory()
        let store = try SQLiteStore(path: dir.appendingPathComponent("c.sqlite").path)
        _ = try await store.addDevice("priv-1", nowMs: systemClock())
        var config = CollectorConfiguration(sqlitePath: "", retentionFile: "")
        config.port = 0
        var logger = Logger(label: "test.privacy")
        logger.logLevel = .warning
        let api = CollectorAPI(store: store, policy: .defaults, configuration: config, logger: logger)
        let token = try await api.issueToken(role: .device, name: "priv-1", device: "priv-1").0
        try token.write(toFile: dir.appendingPathComponent("token").path, atomically: true, encoding: .utf8)

        // The real ingest, behind a route that keeps a copy of every body as it arrived.
        let recorder = Recorder()
        let router = Router()
        router.post("/v1/report-batches") { request, _ in
            var body = try await request.body.collect(upTo: 1 << 20)
            let bytes = body.readBytes(length: body.readableBytes) ?? []
            recorder.add(bytes)
            return try await api.ingestBatch(Request(head: request.head, body: .init(buffer: ByteBuffer(bytes: bytes))))
        }
        let portBox = Recorder()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { portBox.add(Array(String($0.localAddress?.port ?? 0).utf8)) }, logger: logger)

        // LAN peers: two namespaces with known MACs, each on a veth to this namespace, pinging us.
        let sfx = String(TestSupport.uniqueSuffix().prefix(4))
        var namespaces: [NetworkNamespace] = []
        defer {
            for i in 0..<2 { _ = try? TestSupport.sh("ip link del mpl\(sfx)\(i)", check: false) }
            _ = try? TestSupport.sh("ip link del \(Self.ssid); ip link del \(Self.macNamedInterface)", check: false)
        }
        for (i, mac) in Self.clientMACs.enumerated() {
            let ns = try NetworkNamespace(prefix: "mpp")
            namespaces.append(ns)
            let local = "mpl\(sfx)\(i)"
            try TestSupport.sh("ip link add \(local) type veth peer name peer\(i) netns \(ns.name)")
            try TestSupport.sh("ip link set \(local) up && ip -6 addr add fe80::1/64 dev \(local) nodad")
            try ns.exec("ip link set peer\(i) address \(mac)")
            try ns.exec("ip link set peer\(i) up")
            try ns.exec("ip -6 addr add fe80::2/64 dev peer\(i) nodad")
        }
        // Interfaces named like an SSID and like a MAC: their link series must be dropped by the guard.
        _ = try? TestSupport.sh("ip link del \(Self.ssid); ip link del \(Self.macNamedInterface)", check: false)
        try TestSupport.sh("ip link add \(Self.ssid) type veth peer name \(Self.macNamedInterface)")
        try TestSupport.sh("ip link set \(Self.ssid) up && ip link set \(Self.macNamedInterface) up")
        for (i, ns) in namespaces.enumerated() {
            try ns.exec("ping -6 -c 2 -i 0.2 -W 2 fe80::1%peer\(i)")
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            var port = 0
            for _ in 0..<100 where port == 0 {
                try await Task.sleep(for: .milliseconds(50))
                port = portBox.bodies.first.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
            }
            #expect(port > 0)
            let agentConfig = dir.appendingPathComponent("agent.yaml").path
            try """
                device_id: priv-1
                collector: {url: "http://127.0.0.1:\(port)", token_file: \(dir.path)/token, insecure_demo: true}
                state_dir: \(dir.path)/state
                sampling: {interval_seconds: 1, window_seconds: 2}
                link: {interfaces: ["mpl\(sfx)*", "\(Self.ssid)", "\(Self.macNamedInterface)"]}
                lan_clients: {interfaces: ["mpl\(sfx)*"], max_clients: 16}
                privacy: {guard_ssids: ["\(Self.ssid)"]}
                logging: {level: trace}
                """.write(toFile: agentConfig, atomically: true, encoding: .utf8)
            let agent = try ChildProcess(TestSupport.executable("meetpunt-agent"), ["run", "--config", agentConfig, "--duration", "5"])
            _ = try agent.waitFor("sampling")
            for (i, ns) in namespaces.enumerated() { _ = try ns.exec("ping -6 -c 1 -W 1 fe80::1%peer\(i)", check: false) }
            #expect(try agent.waitForExit(timeout: 60) == 0, "\(agent.text)")
            let log = agent.text

            // What the collector stored: two clients by pseudonym, with only the U/L bit and OUI as labels.
            let windows = try await store.windows(device: "priv-1", metric: "lan.client.reachable", fromMs: 0, toMs: .max,
                                                  cutoffs: RetentionPolicy.defaults.cutoffs(nowMs: systemClock()), limit: 1000)
            let clients = Set(windows.compactMap { $0.labels["client"] })
            #expect(clients.count == 2, "\(windows.map(\.labels))")
            #expect(windows.contains { $0.labels["mac_kind"] == "global" && $0.labels["oui"] == "00-1B-21" })
            #expect(windows.contains { $0.labels["mac_kind"] == "local" && $0.labels["oui"] == "00-00-00" })
            // The technician's lookup gives the pseudonym the dashboard shows.
            let lookup = try TestSupport.sh("\(TestSupport.executable("meetpunt-agent")) pseudonym 00-1B-21-3A-4F-5E --config \(agentConfig)")
            #expect(clients.contains(String(lookup.split(separator: " ").first ?? "")), "\(lookup)")
            let guardDrops = try await store.windows(device: "priv-1", metric: "agent.guard_dropped_series", fromMs: 0, toMs: .max,
                                                     cutoffs: RetentionPolicy.defaults.cutoffs(nowMs: systemClock()), limit: 1000)
            #expect(guardDrops.reduce(0) { $0 + $1.sum } > 0, "the SSID- and MAC-named interfaces were dropped by the guard")
            #expect(log.contains("outgoing-data guard dropped a series"))

            // Every byte that left: request bodies (as sent and inflated), the state directory, the log.
            let bodies = recorder.bodies
            #expect(bodies.count >= 2)
            for raw in bodies {
                let json = String(decoding: try Gzip.decompress(raw, limit: 8 << 20), as: UTF8.self)
                #expect(Self.hits(in: json).isEmpty, "request body carries \(Self.hits(in: json))")
                #expect(Self.hits(in: String(decoding: raw, as: UTF8.self)).isEmpty)
            }
            let stateFiles = try FileManager.default.subpathsOfDirectory(atPath: "\(dir.path)/state")
            #expect(stateFiles.contains("device-secret"))
            #expect(stateFiles.contains { $0.hasPrefix("spool/") && $0.hasSuffix(".seg") })
            for file in stateFiles {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: "\(dir.path)/state/\(file)", isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
                let bytes = try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/state/\(file)"))
                // Spool records hold gzip bodies: each is inflated and searched too.
                var views = [bytes]
                if file.hasSuffix(".seg") {
                    let all = [UInt8](bytes)
                    var offset = 0
                    while let r = DiskSpool.parseRecord(all, at: offset) {
                        if r.kind == DiskSpool.kindReport {
                            let start = offset + DiskSpool.headerBytes
                            views.append(Data(try Gzip.decompress(Array(all[start..<(start + r.length)]), limit: 8 << 20)))
                        }
                        offset += DiskSpool.headerBytes + r.length
                    }
                    #expect(offset == all.count, "\(file) parses to its end")
                    #expect(views.count > 1, "\(file) held reports")
                }
                for view in views {
                    #expect(Self.hits(in: String(decoding: view, as: UTF8.self)).isEmpty, "\(file)")
                    for mac in Self.clientMACs {
                        let raw = Data(mac.split(separator: ":").map { UInt8($0, radix: 16)! })
                        #expect(view.range(of: raw) == nil, "\(file) holds a raw MAC")
                    }
                }
            }
            #expect(Self.hits(in: log).isEmpty, "the agent's log carries \(Self.hits(in: log))")
            #expect(log.contains("reports delivered"), "trace logging was on")
            group.cancelAll()
        }
    }

    /// The guard drops, counts and logs by metric name and label key only.
    @Test func outgoingGuardDropsCountsAndLogsWithoutTheValue() throws {
        let lines = LogCapture()
        let logger = Logger(label: "test") { _ in CapturingHandler(capture: lines) }
        let assembler = ReportAssembler(deviceID: "dev", agentVersion: "0.1.0", outgoingGuard: OutgoingGuard(guardSSIDs: [Self.ssid]))
        let leaky = [
            Series(metric: "link.mtu", unit: "bytes", labels: ["interface": Self.macNamedInterface], count: 1, min: 1, max: 1, mean: 1, last: 1, sum: 1, sketch: nil),
            Series(metric: "link.mtu", unit: "bytes", labels: ["interface": Self.ssid], count: 1, min: 1, max: 1, mean: 1, last: 1, sum: 1, sketch: nil),
            Series(metric: "link.mtu", unit: "bytes", labels: ["interface": "eth0"], count: 1, min: 1, max: 1, mean: 1, last: 1, sum: 1, sketch: nil),
        ]
        let report = assembler.assemble(seq: 1, windowStartMs: 0, windowEndMs: 1, epoch: .init(id: 1), series: leaky,
                                        droppedSeries: 0, logger: logger)
        #expect(report.series.filter { $0.metric == "link.mtu" }.map { $0.labels["interface"] } == ["eth0"])
        #expect(report.series.first { $0.metric == "agent.guard_dropped_series" }?.sum == 2)
        let text = lines.all.joined(separator: "\n")
        #expect(text.contains("link.mtu"))
        #expect(Self.hits(in: text).isEmpty && !text.contains(Self.macNamedInterface))
    }

    /// The log handler redacts identifiers whoever logs them.
    @Test func logLinesNeverCarryRawIdentifiers() {
        let lines = LogCapture()
        let logger = Logger(label: "test") { _ in
            RedactingLogHandler(wrapping: CapturingHandler(capture: lines), guardSSIDs: [Self.ssid])
        }
        logger.error("neighbour 00:1B:21:3A:4F:5E on \(Self.ssid) via 192.168.1.1", metadata: ["peer": "fe80::1%br-lan", "mac": "001b213a4f5e"])
        let text = lines.all.joined(separator: "\n")
        #expect(!text.isEmpty)
        #expect(Self.hits(in: text).isEmpty, "\(text)")
        #expect(!text.contains("192.168.1.1") && !text.contains("fe80::1"))
    }
}

final class LogCapture: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) {
        lock.lock()
        lines.append(s)
        lock.unlock()
    }
    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }
}

struct CapturingHandler: LogHandler {
    let capture: LogCapture
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        capture.append("\(event.level) \(event.message) \((event.metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " "))")
    }
}

/// A collector that cannot serve fails fast: one clear line, a non-zero exit, no spinning background job.
@Suite struct CollectorProcessTests {
    @Test func serveOnAPortInUseExitsWithOneClearLine() throws {
        let dir = try TestSupport.tempDirectory()
        let config = try TestSupport.collectorConfig(in: dir)
        let first = try ChildProcess(EndToEndTests.collector, ["serve", "--config", config])
        defer { first.stop() }
        let port = try #require(Int(try first.waitFor("listening on").split(separator: ":").last ?? ""))
        let second = try ChildProcess(EndToEndTests.collector, ["serve", "--config", config, "--port", "\(port)"])
        defer { second.stop() }
        let status = try second.waitForExit(timeout: 30)
        #expect(status != 0, "a collector that cannot listen exits non-zero")
        let lines = second.text.split(separator: "\n")
        #expect(lines.count <= 5, "a few lines, not a log storm: \(lines.count) lines\n\(second.text.prefix(2000))")
        #expect(second.text.contains("serving on 127.0.0.1:\(port) failed"), "\(second.text.prefix(2000))")
        #expect(!second.text.contains("purge failed"))
        // The first collector is unaffected.
        #expect(try TestSupport.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:\(port)/healthz", check: false) == "200")
    }
}

/// No secret in any log line at any level: the agent at `trace` through start, shipping, retries against
/// a collector that is down, and stop; the token and the device secret appear in none of its output.
@Suite struct SecretsInLogsTests {
    @Test func traceLogsHoldNeitherTokenNorDeviceSecret() throws {
        let dir = try TestSupport.tempDirectory()
        let config = try TestSupport.collectorConfig(in: dir)
        try TestSupport.sh("\(EndToEndTests.collector) device add secrets-1 --config \(config) --token-file \(dir.path)/device.token")
        let token = try String(contentsOfFile: "\(dir.path)/device.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try ChildProcess(EndToEndTests.collector, ["serve", "--config", config])
        let port = try #require(Int(try server.waitFor("listening on").split(separator: ":").last ?? ""))
        func agentConfig(_ port: Int) throws -> String {
            let path = dir.appendingPathComponent("agent-\(port).yaml").path
            try """
                device_id: secrets-1
                collector: {url: "http://127.0.0.1:\(port)", token_file: \(dir.path)/device.token, insecure_demo: true}
                state_dir: \(dir.path)/agent-state
                sampling: {interval_seconds: 1, window_seconds: 1}
                link: {interfaces: ["lo"], include_loopback: true}
                lan_clients: {enabled: false}
                logging: {level: trace}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        // A configuration change through check-in happens during the run, so its path logs at trace too.
        try TestSupport.sh("\(EndToEndTests.collector) device config secrets-1 --config \(config) --set '{\"samplers\": {\"link\": true}}'")
        let shipping = try ChildProcess(EndToEndTests.agent, ["run", "--config", try agentConfig(port), "--duration", "3"])
        #expect(try shipping.waitForExit(timeout: 60) == 0)
        #expect(shipping.text.contains("remote settings applied"), "the config change path was taken")
        server.stop()
        // The collector is gone: every upload fails and is retried.
        let retrying = try ChildProcess(EndToEndTests.agent, ["run", "--config", try agentConfig(port), "--duration", "3"])
        #expect(try retrying.waitForExit(timeout: 60) == 0)
        let logs = shipping.text + retrying.text + server.text
        #expect(shipping.text.contains("trace") || shipping.text.contains("debug"), "the run really logged at trace level")
        #expect(retrying.text.contains("will retry"), "the retry path was taken")
        // Backoff holds while draining at shutdown: 3 s of running and at most 10 s of draining allow a
        // handful of attempts (full jitter under 1, 2, 4, 8, 16 s ceilings), not a storm.
        let attempts = retrying.text.components(separatedBy: "will retry").count - 1
        #expect(attempts <= 12, "\(attempts) upload attempts against a collector that is down")
        let secret = [UInt8](try Data(contentsOf: dir.appendingPathComponent("agent-state/device-secret")))
        try #require(secret.count == 32)
        let secretSpellings = [secret.map { String(format: "%02x", $0) }.joined(), secret.map { String(format: "%02X", $0) }.joined(),
                               Data(secret).base64EncodedString()]
        #expect(!logs.contains(token), "the device token appears in a log line")
        #expect(!logs.contains(String(token.prefix(12))), "a prefix of the device token appears in a log line")
        for s in secretSpellings { #expect(!logs.contains(s), "the device secret appears in a log line") }
        #expect(!Data(logs.utf8).contains(Data(secret)), "the raw device secret appears in the output")
        let help = try TestSupport.sh("\(EndToEndTests.agent) run --help 2>&1; \(EndToEndTests.agent) --help 2>&1", check: false)
        #expect(!help.contains(token))
    }
}
