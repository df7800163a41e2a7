@testable import AgentCore
import Aggregation
import Pseudonymisation
import Testing
import TelemetryModel
@testable import TrafficAnalysis

/// How one interval of traffic analysis becomes samples: per-client RTT grouped by pseudonym, the
/// clients past the cap gathered in `others`, every series in time order.
@Suite struct TrafficSamplesTests {
    /// 20 clients (16 reported by pseudonym, 4 in `others`), RTT samples interleaved between them in time
    /// order on both legs, and samples of a client the interval never counted (past its client cap).
    @Test func perClientRTTKeepsTimeOrderAndOthersGathersTheRest() throws {
        var interval = TrafficInterval()
        let macs: [UInt64] = (0..<20).map { 0x02_00_00_00_00_00 | UInt64($0 + 1) }
        for (i, mac) in macs.enumerated() {
            // Busiest first by index, so clients 16...19 are the ones past the cap.
            interval.clients[mac] = ClientTraffic(upstreamBytes: UInt64(10_000 - i * 100), downstreamBytes: 0, packets: 1)
        }
        let uncounted: UInt64 = 0x02_00_00_00_00_FF
        var expected: [String: [Double]] = [:]  // "<client index>/<leg>" -> values in time order
        for step in 0..<400 {
            let client = (step * 5) % 21  // 20 is the uncounted client
            let leg: RTTLeg = step % 2 == 0 ? .lan : .wan
            let microseconds = Int64(1_000 + step * 13)
            let mac = client == 20 ? uncounted : macs[client]
            interval.rtt.append(RTTSample(leg: leg, method: .timestamps, microseconds: microseconds, client: mac))
            let group = client == 20 ? "none" : client >= 16 ? "others" : "\(client)"
            expected["\(group)/\(leg.rawValue)", default: []].append(Double(microseconds) / 1000)
        }

        let pseudonymiser = Pseudonymiser(secret: try DeviceSecret(bytes: [UInt8](repeating: 7, count: 32)))
        let epoch = KeyEpoch.containing(unixSeconds: 1_790_000_000, lengthSeconds: 30 * 86_400)
        var batch = SampleBatch()
        TrafficSamples.add(interval, pseudonymiser: pseudonymiser, epoch: epoch, maxClients: 16, captureDrops: nil, into: &batch)

        let runs = batch.runs.filter { $0.descriptor.name == "traffic.client.rtt" }
        var seen: [String: [Double]] = [:]
        for run in runs {
            let peer = try #require(run.labels["peer"]), leg = try #require(run.labels["leg"])
            let group: String
            if peer == "others" {
                group = "others"
            } else {
                let index = try #require(macs.firstIndex { pseudonymiser.pseudonym(of: TrafficSamples.macBytes($0), kind: .clientMAC, epoch: epoch) == peer })
                group = "\(index)"
            }
            #expect(seen["\(group)/\(leg)"] == nil, "one series per pseudonym and leg")
            seen["\(group)/\(leg)"] = run.values
        }
        // Every reported client's samples, and `others` gathering four clients', in the order they were taken
        // (a window's `last` is the latest sample); the uncounted client's samples are in no series.
        var wanted = expected
        wanted["none/lan"] = nil
        wanted["none/wan"] = nil
        #expect(seen == wanted)
        #expect(expected["none/lan"] != nil && expected["none/wan"] != nil, "the test has uncounted samples on both legs")
        #expect(seen["others/lan"]?.last == expected["others/lan"]?.last)

        // `others` holds one value per folded client, busiest first (as a reported client's series holds
        // its own): the four clients past the cap, 8,400 down to 8,100 bytes up, one packet each.
        let othersUp = batch.runs.filter { $0.descriptor.name == "traffic.client.bytes" && $0.labels == ["peer": "others", "direction": "upstream"] }
        #expect(othersUp.map(\.values) == [[8_400, 8_300, 8_200, 8_100]])
        let othersPackets = batch.runs.filter { $0.descriptor.name == "traffic.client.packets" && $0.labels == ["peer": "others"] }
        #expect(othersPackets.map(\.values) == [[1, 1, 1, 1]])
        #expect(!batch.samples.contains { $0.labels["peer"] == "others" }, "others is gathered in runs, not sample by sample")
        #expect(batch.samples.filter { $0.descriptor.name == "traffic.client.packets" }.count == 16)

        // No raw MAC in any label (as text, with or without separators).
        for labels in batch.runs.map(\.labels) + batch.samples.map(\.labels) {
            for value in labels.values {
                for mac in macs + [uncounted] {
                    let hex = String(mac, radix: 16)
                    #expect(!value.lowercased().replacingOccurrences(of: ":", with: "").contains(hex))
                }
            }
        }
    }

    /// A window folds a run of values into its series with the series' last value the run's last, and
    /// its count, sum and extremes over every value.
    @Test func aRunFoldsIntoOneSeriesInOrder() throws {
        var aggregator = WindowAggregator(maxSeries: 4)
        let descriptor = try #require(MetricCatalog.descriptor(named: "traffic.tcp.rtt"))
        aggregator.add(descriptor, labels: ["leg": "wan", "method": "timestamps"], values: [5, 1, 9, 3])
        aggregator.add(descriptor, labels: ["method": "timestamps", "leg": "wan"], value: 4)
        aggregator.add(descriptor, labels: ["leg": "lan", "method": "timestamps"], values: [2])
        let (series, dropped) = aggregator.drain()
        #expect(dropped == 0)
        #expect(series.count == 2)
        let wan = try #require(series.first { $0.labels["leg"] == "wan" })
        #expect(wan.count == 5 && wan.sum == 22 && wan.min == 1 && wan.max == 9 && wan.last == 4)
        #expect(wan.sketch?.count == 5)
    }
}

/// `analyze` folds intervals on a thread of its own; the windows must be the ones a fold in line makes.
@Suite struct IntervalFolderTests {
    /// Twelve intervals over three windows, each with clients past the cap and RTT samples on both legs,
    /// folded through a folder only two intervals deep (so `fold` waits for room) and in line.
    @Test func foldingOnItsOwnThreadGivesTheWindowsOfAFoldInLine() throws {
        let pseudonymiser = Pseudonymiser(secret: try DeviceSecret(bytes: [UInt8](repeating: 3, count: 32)))
        let start: Int64 = 1_790_000_000_000_000
        var handedOver: [(TrafficInterval, Int64)] = []
        for i in 0..<12 {
            var interval = TrafficInterval()
            for c in 0..<(18 + i) {
                interval.clients[0x02_00_00_00_00_00 | UInt64(c + 1)] = ClientTraffic(upstreamBytes: UInt64(500 + (c * 37 + i) % 400), downstreamBytes: UInt64(c), packets: 2)
            }
            for s in 0..<(200 + i * 30) {
                interval.rtt.append(RTTSample(leg: s % 3 == 0 ? .wan : .lan, method: s % 2 == 0 ? .timestamps : .seqack,
                                              microseconds: Int64(300 + (s * 7919 + i) % 90_000), client: 0x02_00_00_00_00_00 | UInt64(s % (18 + i) + 1)))
            }
            interval.retransmissions[.upstream] = UInt64(i)
            handedOver.append((interval, start + Int64(i) * 10_000_000))
        }

        let folder = IntervalFolder(windowMicroseconds: 40_000_000, pseudonymiser: pseudonymiser, epochSeconds: 30 * 86_400, maxClients: 16, depth: 2)
        for (interval, t) in handedOver { folder.fold(interval, at: t) }
        let (folded, intervals) = folder.finish()

        var windows = WindowedAggregation(windowMicroseconds: 40_000_000, maxSeries: 4900)
        var inLine: [WindowedAggregation.Window] = []
        for (interval, t) in handedOver {
            var batch = SampleBatch()
            TrafficSamples.add(interval, pseudonymiser: pseudonymiser, epoch: KeyEpoch.containing(unixSeconds: t / 1_000_000, lengthSeconds: 30 * 86_400),
                               maxClients: 16, captureDrops: nil, into: &batch)
            inLine += windows.add(batch, at: t)
        }
        inLine += windows.finish()

        #expect(intervals == 12)
        #expect(folded.count == 3 && inLine.count == 3)
        for (a, b) in zip(folded, inLine) {
            #expect(a.startMicroseconds == b.startMicroseconds && a.endMicroseconds == b.endMicroseconds)
            #expect(a.series == b.series)
            #expect(a.series.contains { $0.metric == "traffic.client.rtt" && $0.labels["peer"] == "others" })
        }
    }
}
