@testable import AgentCore
import Foundation
import Testing
import TelemetryModel
@testable import meetpunt_agent

/// `analyze`'s readable summary, line by line: the separators, the skip reasons, the window lines (with
/// packets not analysed, RTT by leg and clients), the cut after 24 windows and the early stop.
@Suite struct AnalyzeRenderTests {
    static func series(_ metric: String, _ labels: [String: String] = [:], sum: Double, sketch: QuantileSketch? = nil) -> Series {
        Series(metric: metric, unit: "", labels: labels, count: 1, min: sum, max: sum, mean: sum, last: sum, sum: sum, sketch: sketch)
    }

    @Test func theSummaryReadsAsDocumented() {
        var rtt = QuantileSketch()
        rtt.add(10)
        var windows: [WindowedAggregation.Window] = []
        for i in 0..<26 {
            var series = [Self.series("traffic.packets", ["direction": "upstream"], sum: 1), Self.series("traffic.bytes", ["direction": "upstream"], sum: 10)]
            if i == 0 {
                series = [
                    Self.series("traffic.packets", ["direction": "upstream"], sum: 5), Self.series("traffic.packets", ["direction": "downstream"], sum: 3),
                    Self.series("traffic.bytes", ["direction": "upstream"], sum: 500), Self.series("traffic.bytes", ["direction": "downstream"], sum: 300),
                    Self.series("traffic.skipped_packets", ["reason": "not_ip"], sum: 2),
                    Self.series("traffic.client.bytes", ["peer": "p1", "direction": "upstream"], sum: 400),
                    Self.series("traffic.client.bytes", ["peer": "p1", "direction": "downstream"], sum: 300),
                    Self.series("traffic.client.bytes", ["peer": "p2", "direction": "upstream"], sum: 100),
                    Self.series("traffic.client.packets", ["peer": "p1"], sum: 6),
                    Self.series("traffic.client.packets", ["peer": "p2"], sum: 1),
                    // `others` holds the most bytes and is still listed last.
                    Self.series("traffic.client.bytes", ["peer": "others", "direction": "downstream"], sum: 5000),
                    Self.series("traffic.client.packets", ["peer": "others"], sum: 4),
                ]
            } else if i == 1 {
                series.append(Self.series("traffic.tcp.rtt", ["leg": "lan", "method": "handshake"], sum: 10, sketch: rtt))
                // A client's figures are summed over the windows it appears in.
                series.append(Self.series("traffic.client.bytes", ["peer": "p2", "direction": "downstream"], sum: 1000))
                series.append(Self.series("traffic.client.packets", ["peer": "p2"], sum: 2))
                series.append(Self.series("traffic.client.rtt", ["peer": "p2", "leg": "wan"], sum: 10, sketch: rtt))
            }
            let start = Int64(i) * 60_000_000
            // The third window was full: its dropped series are said there and summed above.
            windows.append(.init(epoch: nil, startMicroseconds: start, endMicroseconds: start + 60_000_000, series: series, droppedSeries: i == 2 ? 7 : 0))
        }
        let output = AnalyzeCommand.Output(
            file: "x.pcap", linkType: "EN10MB", snaplenReadBytes: 236, packets: 10, bytes: 1000, capturedBytes: 900,
            skipped: ["truncated_header": 1, "not_ip": 2], error: .init(message: "x.pcap: boom", offset: 123),
            ipv4: 7, ipv6: 1, tcp: 5, udp: 2, icmp: 1, other: 0, tcpStreams: 2, retransmissions: 1, fastRetransmissions: 0,
            outOfOrder: 0, zeroWindow: 0, rttSamples: 1, windows: 26, droppedSeries: 7, clients: AnalyzeCommand.clients(in: windows),
            streams: [.init(firstFrame: 1, synFrame: 1, handshakeRttUs: 2500, packets: 3), .init(firstFrame: 2, synFrame: 2, handshakeRttUs: 1500, packets: 4),
                      .init(firstFrame: 3, synFrame: nil, handshakeRttUs: nil, packets: 1)])
        let p50 = SampleCommand.fixed(rtt.quantile(0.5)!, 2), p95 = SampleCommand.fixed(rtt.quantile(0.95)!, 2)
        // The client list holds its percentiles to the microsecond before they are printed.
        func micro(_ v: Double) -> String { SampleCommand.fixed((v * 1000).rounded() / 1000, 2) }
        let clientP50 = micro(rtt.quantile(0.5)!), clientP95 = micro(rtt.quantile(0.95)!)
        var expected = [
            "x.pcap: EN10MB, 10 packets, 1000 bytes on the wire (headers only were read; at most 236 bytes per packet)",
            "  IPv4 7, IPv6 1; TCP 5, UDP 2, ICMP 1, other 0",
            "  not analysed: 2 not ip, 1 truncated header",
            "  TCP: 2 streams, 1 retransmissions (0 fast), 0 out of order, 0 zero-window",
            "  handshake RTT over 2 streams: p50 2.50 ms, p90 2.50 ms, max 2.50 ms",
            "  26 window(s); a note on the key",
            "  7 series dropped: a window holds at most 4900; a shorter --window-seconds keeps them",
            // `others` is many clients in one series: said, not counted as a client.
            "    window +0 s: 8 packets, 800 bytes, 2 not analysed, 2 client(s) and others",
            "    window +60 s: 1 packets, 10 bytes, LAN RTT p50 \(p50) / p95 \(p95) ms, 1 client(s)",
            "    window +120 s: 1 packets, 10 bytes, 7 series dropped",
        ]
        for i in 3..<24 { expected.append("    window +\(i * 60) s: 1 packets, 10 bytes") }
        expected += [
            "    … 2 more",
            "  clients by pseudonym, by bytes:",
            "    p2: 3 packets, 100 bytes up, 1000 bytes down, WAN RTT p50 \(clientP50) / p95 \(clientP95) ms (1)",
            "    p1: 6 packets, 400 bytes up, 300 bytes down",
            "    others: 4 packets, 0 bytes up, 5000 bytes down",
            "  stopped early: x.pcap: boom at byte offset 123",
        ]
        let text = AnalyzeCommand.render(output, windows: windows, keyNote: "a note on the key")
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) == expected)
        #expect(p50 == "10.00" || p50.hasPrefix("9.9") || p50.hasPrefix("10.0"), "the sketch holds one RTT of 10 ms")
    }

    /// The readable summary lists the ten named clients with the most bytes, says how many there were,
    /// and then `others` whatever its size; a client's figures and RTT sketches are summed over windows.
    @Test func theClientListIsCutAtTenAndKeepsOthers() {
        var first = QuantileSketch(), second = QuantileSketch()
        first.add(10)
        second.add(20)
        let named = (1...13).flatMap { i in
            [Self.series("traffic.client.bytes", ["peer": "c\(i)", "direction": "upstream"], sum: Double(i * 100)),
             Self.series("traffic.client.packets", ["peer": "c\(i)"], sum: Double(i))]
        }
        let windows = [
            WindowedAggregation.Window(epoch: nil, startMicroseconds: 0, endMicroseconds: 60_000_000, series: named + [
                Self.series("traffic.client.bytes", ["peer": "others", "direction": "downstream"], sum: 100_000),
                Self.series("traffic.client.packets", ["peer": "others"], sum: 50),
                Self.series("traffic.client.rtt", ["peer": "c13", "leg": "lan"], sum: 10, sketch: first),
            ], droppedSeries: 0),
            WindowedAggregation.Window(epoch: nil, startMicroseconds: 60_000_000, endMicroseconds: 120_000_000, series: [
                Self.series("traffic.client.bytes", ["peer": "c13", "direction": "downstream"], sum: 7),
                Self.series("traffic.client.rtt", ["peer": "c13", "leg": "lan"], sum: 20, sketch: second),
            ], droppedSeries: 0),
        ]
        let clients = AnalyzeCommand.clients(in: windows)
        #expect(clients.map(\.peer) == (1...13).reversed().map { "c\($0)" } + ["others"])
        #expect(clients.first?.downstreamBytes == 7 && clients.first?.upstreamBytes == 1300 && clients.first?.packets == 13)
        #expect(clients.first?.lanRtt?.samples == 2, "both windows' sketches are merged")
        #expect(clients.first?.wanRtt == nil)
        #expect(clients.last == .init(peer: "others", packets: 50, upstreamBytes: 0, downstreamBytes: 100_000, lanRtt: nil, wanRtt: nil))
        let output = AnalyzeCommand.Output(
            file: "x.pcap", linkType: "EN10MB", snaplenReadBytes: 236, packets: 141, bytes: 109_100, capturedBytes: 109_100, skipped: [:], error: nil,
            ipv4: 141, ipv6: 0, tcp: 141, udp: 0, icmp: 0, other: 0, tcpStreams: 0, retransmissions: 0, fastRetransmissions: 0,
            outOfOrder: 0, zeroWindow: 0, rttSamples: 2, windows: 2, droppedSeries: 0, clients: clients, streams: [])
        let lines = AnalyzeCommand.render(output, windows: windows, keyNote: "k").split(separator: "\n").map(String.init)
        let list = lines.drop { !$0.hasPrefix("  clients") }
        #expect(list.first == "  clients by pseudonym, by bytes (top 10 of 13 pseudonyms):")
        #expect(list.dropFirst().map { $0.split(separator: ":").first.map(String.init) }
                == (4...13).reversed().map { "    c\($0)" } + ["    others"])
        #expect(list.last == "    others: 50 packets, 0 bytes up, 100000 bytes down")
    }
}

/// `analyze --config` names and groups a capture's clients as the router does: pseudonyms with its device
/// secret and key epoch length (the ones `meetpunt-agent pseudonym --at` and the dashboards give for that
/// client at that time), and `others` from its `capture.max_clients` per sampling interval.
@Suite struct AnalyzeClientPseudonymTests {
    /// A pcap (microsecond, Ethernet) of TCP SYNs to 198.51.100.7, one per (time, host): the sender's MAC
    /// ends in the host's two bytes (02:00:00:00:hi:lo) and its address is 192.168.(1 + hi).lo.
    static func capture(_ packets: [(seconds: UInt32, host: UInt16)]) -> [UInt8] {
        func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var file = le32(0xA1B2_C3D4) + le16(2) + le16(4) + le32(0) + le32(0) + le32(65535) + le32(1)
        for p in packets {
            let hi = UInt8(p.host >> 8), lo = UInt8(p.host & 0xFF)
            let ethernet: [UInt8] = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, hi, lo, 0x08, 0x00]
            let ip: [UInt8] = [0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 192, 168, 1 + hi, lo, 198, 51, 100, 7]
            let tcp: [UInt8] = [0xC0, lo, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0]
            let frame = ethernet + ip + tcp
            file += le32(p.seconds) + le32(0) + le32(UInt32(frame.count)) + le32(UInt32(frame.count)) + frame
        }
        return file
    }

    /// A state directory with a device secret, and an agent configuration over it with `extra` lines.
    static func router(_ dir: URL, name: String, extra: String) throws -> String {
        if !FileManager.default.fileExists(atPath: "\(dir.path)/state/device-secret") {
            try "token\n".write(toFile: dir.appendingPathComponent("token").path, atomically: true, encoding: .utf8)
            try TestSupport.sh("chmod 600 \(dir.path)/token && mkdir -p \(dir.path)/state && head -c 32 /dev/urandom > \(dir.path)/state/device-secret && chmod 600 \(dir.path)/state/device-secret")
        }
        let config = dir.appendingPathComponent(name).path
        try """
            device_id: ap-1
            collector: {url: "http://127.0.0.1:9", token_file: \(dir.path)/token, insecure_demo: true}
            state_dir: \(dir.path)/state
            \(extra)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    static func clients(_ json: String) throws -> [AnalyzeCommand.ClientOutput] {
        struct Clients: Decodable { var clients: [AnalyzeCommand.ClientOutput] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Clients.self, from: Data(json.utf8)).clients
    }

    @Test func theRoutersSecretAndEpochNameTheClients() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        // A key epoch of 7 days, not the default 30: the capture's time (1,700,000,000) falls in a
        // different epoch under each, so a pseudonym made with the default would differ.
        let config = try Self.router(dir, name: "agent.yaml", extra: "privacy: {key_epoch_days: 7}")
        let thirtyDays = try Self.router(dir, name: "thirty.yaml", extra: "privacy: {key_epoch_days: 30}")
        // One SYN from 192.168.1.2 (MAC 02:00:00:00:00:02) to the internet at 1,700,000,000: one client.
        let pcap = dir.appendingPathComponent("one.pcap").path
        try Data(Self.capture([(1_700_000_000, 2)])).write(to: URL(fileURLWithPath: pcap))

        func pseudonym(_ config: String) throws -> String {
            let lookup = try TestSupport.sh("\(agent) pseudonym 02:00:00:00:00:02 --config \(config) --at 1700000000")
            let p = String(lookup.split(separator: " ").first ?? "")
            #expect(p.hasPrefix("cm_"), "\(lookup)")
            return p
        }
        let expected = try pseudonym(config)
        #expect(try pseudonym(thirtyDays) != expected, "the epoch length changes the pseudonym")

        let json = try TestSupport.sh("\(agent) analyze --json --config \(config) \(pcap)")
        #expect(try Self.clients(json) == [.init(peer: expected, packets: 1, upstreamBytes: 54, downstreamBytes: 0, lanRtt: nil, wanRtt: nil)])
        let text = try TestSupport.sh("\(agent) analyze --config \(config) \(pcap)")
        #expect(text.contains("pseudonyms use this router's device secret"), "\(text)")
        #expect(text.contains("    \(expected): 1 packets, 54 bytes up, 0 bytes down"), "\(text)")
        // Without the router's configuration, a key of this run only: another pseudonym, each run anew.
        let throwaway = try TestSupport.sh("\(agent) analyze \(pcap); \(agent) analyze --json \(pcap)")
        #expect(throwaway.contains("  clients by pseudonym, by bytes:") && !throwaway.contains(expected), "\(throwaway)")
        // No form of the client's Ethernet or IP address in any of it.
        for out in [json, text, throwaway] {
            let lower = out.lowercased()
            for raw in ["02:00:00:00:00:02", "02-00-00-00-00-02", "020000000002", "0200.0000.0002", "192.168.1.2"] {
                #expect(!lower.contains(raw), "\(raw) in \(out)")
            }
        }
    }

    /// Two clients 30 s apart: with the router's 60-s sampling interval and `capture.max_clients: 1` they
    /// share an interval, and the busier one is named, the other in `others`; with the defaults (10 s, 16)
    /// each is named in its own interval.
    @Test func theRoutersIntervalAndClientLimitMakeOthers() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        let config = try Self.router(dir, name: "agent.yaml", extra: "sampling: {interval_seconds: 60}\ncapture: {max_clients: 1}")
        let pcap = dir.appendingPathComponent("two.pcap").path
        try Data(Self.capture([(1_700_000_000, 2), (1_700_000_030, 3), (1_700_000_031, 3)])).write(to: URL(fileURLWithPath: pcap))
        let busier = String(try TestSupport.sh("\(agent) pseudonym 02:00:00:00:00:03 --config \(config) --at 1700000030").split(separator: " ").first ?? "")
        #expect(busier.hasPrefix("cm_"))

        let routers = try Self.clients(try TestSupport.sh("\(agent) analyze --json --config \(config) \(pcap)"))
        #expect(routers == [.init(peer: busier, packets: 2, upstreamBytes: 108, downstreamBytes: 0, lanRtt: nil, wanRtt: nil),
                            .init(peer: "others", packets: 1, upstreamBytes: 54, downstreamBytes: 0, lanRtt: nil, wanRtt: nil)])
        let defaults = try Self.clients(try TestSupport.sh("\(agent) analyze --json \(pcap)"))
        #expect(defaults.map(\.packets) == [2, 1] && !defaults.contains { $0.peer == "others" }, "\(defaults)")
    }

    /// A window holds at most `IntervalFolder.maxSeriesPerWindow` series; past that `analyze` says how
    /// many were dropped, in the summary, on the window's line and in the JSON, instead of losing them
    /// unsaid. 2,600 clients, 16 a 10-s interval (the defaults), in one hour-long window: three series
    /// each (bytes up, bytes down, packets), 7,800 in all. A dropped series counts once however often its
    /// client comes back, and the windows' counts add up.
    @Test func aFullWindowSaysHowManySeriesWereDropped() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        var packets: [(seconds: UInt32, host: UInt16)] = []
        for i in 0..<2600 { packets.append((seconds: 1_700_000_000 + UInt32(i / 16) * 10, host: UInt16(i + 1))) }
        // The last client, refused, sends again in five later intervals of the same window.
        var again = packets
        for k in 0..<5 { again.append((seconds: 1_700_001_700 + UInt32(k) * 10, host: 2600)) }
        // The same 2,600 clients in the next hour too: two full windows.
        var twice = packets
        for p in packets { twice.append((seconds: p.seconds + 3600, host: p.host)) }
        var files: [String: String] = [:]
        for (name, list) in [("many", packets), ("again", again), ("twice", twice)] {
            files[name] = dir.appendingPathComponent("\(name).pcap").path
            try Data(Self.capture(list)).write(to: URL(fileURLWithPath: files[name]!))
        }
        let many = files["many"]!
        struct Dropped: Decodable { var droppedSeries: Int; var windows: Int; var clients: [AnalyzeCommand.ClientOutput] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        func analyse(_ file: String, _ options: String = "--window-seconds 3600") throws -> Dropped {
            try decoder.decode(Dropped.self, from: Data(try TestSupport.sh("\(agent) analyze --json \(options) \(file)").utf8))
        }
        let full = try analyse(many)
        #expect(full.windows == 1)
        let repeated = try analyse(files["again"]!), both = try analyse(files["twice"]!)
        // Each adds one series, the retransmission count (a SYN again on a known conversation), and no
        // more: counted per sample, the returning client's three refused series would add 15.
        #expect(repeated.windows == 1 && repeated.droppedSeries == full.droppedSeries + 1, "\(repeated.droppedSeries) against \(full.droppedSeries)")
        #expect(both.windows == 2 && both.droppedSeries == 2 * full.droppedSeries + 1, "\(both.droppedSeries) against \(full.droppedSeries)")
        #expect(full.droppedSeries >= 7800 - IntervalFolder.maxSeriesPerWindow && full.droppedSeries < 7800, "\(full.droppedSeries)")
        #expect(full.clients.count < 2600, "the clients past the limit were dropped, not listed")
        let text = try TestSupport.sh("\(agent) analyze --window-seconds 3600 \(many)")
        #expect(text.contains("  \(full.droppedSeries) series dropped: a window holds at most 4900; a shorter --window-seconds keeps them"), "\(text)")
        let windowLine = text.split(separator: "\n").first { $0.hasPrefix("    window +0 s:") }
        #expect(windowLine?.hasSuffix(" client(s), \(full.droppedSeries) series dropped") == true, "\(text)")
        // With the default 60-s windows nothing is dropped, and every client is listed.
        let split = try analyse(many, "")
        #expect(split.droppedSeries == 0 && split.clients.count == 2600 && split.windows > 1, "\(split.droppedSeries) \(split.clients.count)")
        #expect(!(try TestSupport.sh("\(agent) analyze \(many)")).contains("dropped"))
    }
}
