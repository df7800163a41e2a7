@testable import AgentCore
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
                ]
            } else if i == 1 {
                series.append(Self.series("traffic.tcp.rtt", ["leg": "lan", "method": "handshake"], sum: 10, sketch: rtt))
            }
            let start = Int64(i) * 60_000_000
            windows.append(.init(epoch: nil, startMicroseconds: start, endMicroseconds: start + 60_000_000, series: series, droppedSeries: 0))
        }
        let output = AnalyzeCommand.Output(
            file: "x.pcap", linkType: "EN10MB", snaplenReadBytes: 236, packets: 10, bytes: 1000, capturedBytes: 900,
            skipped: ["truncated_header": 1, "not_ip": 2], error: .init(message: "x.pcap: boom", offset: 123),
            ipv4: 7, ipv6: 1, tcp: 5, udp: 2, icmp: 1, other: 0, tcpStreams: 2, retransmissions: 1, fastRetransmissions: 0,
            outOfOrder: 0, zeroWindow: 0, rttSamples: 1, windows: 26,
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
            "    window +0 s: 8 packets, 800 bytes, 2 not analysed, 2 client(s)",
            "    window +60 s: 1 packets, 10 bytes, LAN RTT p50 \(p50) / p95 \(p95) ms",
        ]
        for i in 2..<24 { expected.append("    window +\(i * 60) s: 1 packets, 10 bytes") }
        expected += ["    … 2 more", "  stopped early: x.pcap: boom at byte offset 123"]
        let text = AnalyzeCommand.render(output, windows: windows, keyNote: "a note on the key")
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) == expected)
        #expect(p50 == "10.00" || p50.hasPrefix("9.9") || p50.hasPrefix("10.0"), "the sketch holds one RTT of 10 ms")
    }
}
