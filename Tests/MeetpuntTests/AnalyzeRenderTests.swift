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
            windows.append(.init(epoch: nil, startMicroseconds: start, endMicroseconds: start + 60_000_000, series: series, droppedSeries: 0))
        }
        let output = AnalyzeCommand.Output(
            file: "x.pcap", linkType: "EN10MB", snaplenReadBytes: 236, packets: 10, bytes: 1000, capturedBytes: 900,
            skipped: ["truncated_header": 1, "not_ip": 2], error: .init(message: "x.pcap: boom", offset: 123),
            ipv4: 7, ipv6: 1, tcp: 5, udp: 2, icmp: 1, other: 0, tcpStreams: 2, retransmissions: 1, fastRetransmissions: 0,
            outOfOrder: 0, zeroWindow: 0, rttSamples: 1, windows: 26, clients: AnalyzeCommand.clients(in: windows),
            streams: [.init(firstFrame: 1, synFrame: 1, handshakeRttUs: 2500, packets: 3), .init(firstFrame: 2, synFrame: 2, handshakeRttUs: 1500, packets: 4),
                      .init(firstFrame: 3, synFrame: nil, handshakeRttUs: nil, packets: 1)])
        let p50 = SampleCommand.fixed(rtt.quantile(0.5)!, 2), p95 = SampleCommand.fixed(rtt.quantile(0.95)!, 2)
        var expected = [
            "x.pcap: EN10MB, 10 packets, 1000 bytes on the wire (headers only were read; at most 236 bytes per packet)",
            "  IPv4 7, IPv6 1; TCP 5, UDP 2, ICMP 1, other 0",
            "  not analysed: 2 not ip, 1 truncated header",
            "  TCP: 2 streams, 1 retransmissions (0 fast), 0 out of order, 0 zero-window",
            "  handshake RTT over 2 streams: p50 2.50 ms, p90 2.50 ms, max 2.50 ms",
            "  26 window(s); a note on the key",
            "    window +0 s: 8 packets, 800 bytes, 2 not analysed, 3 client(s)",
            "    window +60 s: 1 packets, 10 bytes, LAN RTT p50 \(p50) / p95 \(p95) ms, 1 client(s)",
        ]
        for i in 2..<24 { expected.append("    window +\(i * 60) s: 1 packets, 10 bytes") }
        expected += [
            "    … 2 more",
            "  clients by pseudonym, by bytes:",
            "    p2: 3 packets, 100 bytes up, 1000 bytes down, WAN RTT p50 \(p50) / p95 \(p95) ms (1)",
            "    p1: 6 packets, 400 bytes up, 300 bytes down",
            "    others: 4 packets, 0 bytes up, 5000 bytes down",
            "  stopped early: x.pcap: boom at byte offset 123",
        ]
        let text = AnalyzeCommand.render(output, windows: windows, keyNote: "a note on the key")
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) == expected)
        #expect(p50 == "10.00" || p50.hasPrefix("9.9") || p50.hasPrefix("10.0"), "the sketch holds one RTT of 10 ms")
    }

    /// The readable summary lists the ten clients with the most bytes and says how many there were;
    /// `--json` keeps them all.
    @Test func theClientListIsCutAtTen() {
        let series = (1...13).flatMap { i in
            [Self.series("traffic.client.bytes", ["peer": "c\(i)", "direction": "upstream"], sum: Double(i * 100)),
             Self.series("traffic.client.packets", ["peer": "c\(i)"], sum: Double(i))]
        }
        let windows = [WindowedAggregation.Window(epoch: nil, startMicroseconds: 0, endMicroseconds: 60_000_000, series: series, droppedSeries: 0)]
        let clients = AnalyzeCommand.clients(in: windows)
        #expect(clients.map(\.peer) == (1...13).reversed().map { "c\($0)" })
        #expect(clients.first == .init(peer: "c13", packets: 13, upstreamBytes: 1300, downstreamBytes: 0, lanRtt: nil, wanRtt: nil))
        let output = AnalyzeCommand.Output(
            file: "x.pcap", linkType: "EN10MB", snaplenReadBytes: 236, packets: 91, bytes: 9100, capturedBytes: 9100, skipped: [:], error: nil,
            ipv4: 91, ipv6: 0, tcp: 91, udp: 0, icmp: 0, other: 0, tcpStreams: 0, retransmissions: 0, fastRetransmissions: 0,
            outOfOrder: 0, zeroWindow: 0, rttSamples: 0, windows: 1, clients: clients, streams: [])
        let lines = AnalyzeCommand.render(output, windows: windows, keyNote: "k").split(separator: "\n").map(String.init)
        let list = lines.drop { !$0.hasPrefix("  clients") }
        #expect(list.first == "  clients by pseudonym, by bytes (top 10 of 13):")
        #expect(list.dropFirst().map { $0.split(separator: ":").first.map(String.init) } == (4...13).reversed().map { "    c\($0)" })
    }
}

/// `analyze --config` names a capture's clients as the router does: with its device secret and its key
/// epoch length, so a pseudonym in the summary is the one `meetpunt-agent pseudonym --at` (and the
/// dashboards) give for that client at that time.
@Suite struct AnalyzeClientPseudonymTests {
    @Test func theRoutersSecretAndEpochNameTheClients() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        try "token\n".write(toFile: dir.appendingPathComponent("token").path, atomically: true, encoding: .utf8)
        try TestSupport.sh("chmod 600 \(dir.path)/token && mkdir -p \(dir.path)/state && head -c 32 /dev/urandom > \(dir.path)/state/device-secret && chmod 600 \(dir.path)/state/device-secret")
        let config = dir.appendingPathComponent("agent.yaml").path
        // A key epoch of 7 days, not the default 30: the capture's time (1,700,000,000) falls in a
        // different epoch under each, so a pseudonym made with the default would differ.
        try """
            device_id: ap-1
            collector: {url: "http://127.0.0.1:9", token_file: \(dir.path)/token, insecure_demo: true}
            state_dir: \(dir.path)/state
            privacy: {key_epoch_days: 7}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // One SYN from 192.168.1.2 (MAC 02:00:00:00:00:02) to the internet at 1,700,000,000: one client.
        let pcap = dir.appendingPathComponent("one.pcap").path
        try Data(MissingLibcryptoTests.onePacketCapture).write(to: URL(fileURLWithPath: pcap))

        let lookup = try TestSupport.sh("\(agent) pseudonym 02:00:00:00:00:02 --config \(config) --at 1700000000")
        let expected = String(lookup.split(separator: " ").first ?? "")
        #expect(expected.hasPrefix("cm_"), "\(lookup)")
        let thirtyDays = try TestSupport.sh("sed -i 's/key_epoch_days: 7/key_epoch_days: 30/' \(config) && \(agent) pseudonym 02:00:00:00:00:02 --config \(config) --at 1700000000; sed -i 's/key_epoch_days: 30/key_epoch_days: 7/' \(config)")
        #expect(!thirtyDays.hasPrefix(expected), "the epoch length changes the pseudonym: \(thirtyDays)")

        struct Clients: Decodable { var clients: [AnalyzeCommand.ClientOutput] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let json = try decoder.decode(Clients.self, from: Data(try TestSupport.sh("\(agent) analyze --json --config \(config) \(pcap)").utf8))
        #expect(json.clients == [.init(peer: expected, packets: 1, upstreamBytes: 54, downstreamBytes: 0, lanRtt: nil, wanRtt: nil)])
        let text = try TestSupport.sh("\(agent) analyze --config \(config) \(pcap)")
        #expect(text.contains("pseudonyms use this router's device secret"), "\(text)")
        #expect(text.contains("    \(expected): 1 packets, 54 bytes up, 0 bytes down"), "\(text)")
        #expect(!text.contains("02:00:00:00:00:02") && !text.lowercased().contains("020000000002"), "no raw address: \(text)")
        // Without the router's configuration, a key of this run only: another pseudonym, each run anew.
        let throwaway = try TestSupport.sh("\(agent) analyze \(pcap)")
        #expect(throwaway.contains("  clients by pseudonym, by bytes:") && !throwaway.contains(expected), "\(throwaway)")
    }
}
