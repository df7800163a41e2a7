import Foundation
import Testing
import Pseudonymisation
import TelemetryModel

@Suite struct WireFormatTests {
    @Test func schemaOneGoldenFileDecodes() throws {
        let data = try Data(contentsOf: TestSupport.fixtures.appendingPathComponent("report-v1.json"))
        let report = try JSONDecoder().decode(Report.self, from: data)
        #expect(report.schema == 1)
        #expect(report.device == "dev-7f3a")
        #expect(report.seq == 42)
        #expect(report.keyEpoch == 680, "the 30-day epoch of its window")
        #expect(report.windowEndMs - report.windowStartMs == 60_000)
        #expect(report.series.count == 5)
        let rate = try #require(report.series.first { $0.metric == "link.rx_rate" })
        let sketch = try #require(rate.sketch)
        #expect(sketch.count == 6)
        // The golden sketch holds the samples 640, 1000, 1480, 1600, 1600, 3280: each quantile is within 1 %.
        for (q, exact) in [(0.0, 640.0), (0.5, 1480), (0.7, 1600), (1, 3280)] {
            let estimate = try #require(sketch.quantile(q))
            #expect(abs(estimate - exact) / exact <= 0.01, "q\(q): \(estimate)")
        }
        #expect(rate.labels == ["interface": "eth0"])
        // The golden report is valid by the collector's rules (at a collector time just after its window).
        #expect(ReportValidator().validate(report, nowMs: report.windowEndMs + 1000) == nil)
        // Re-encoding and decoding gives the same report.
        let again = try JSONDecoder().decode(Report.self, from: JSONEncoder().encode(report))
        #expect(again == report)
    }

    /// Schema 2: sketches hold negative values (signal in dBm). Its golden file decodes, its quantiles are
    /// within the sketch's 1 %, and the collector's rules accept it.
    @Test func schemaTwoGoldenFileWithSignedSketchDecodes() throws {
        let data = try Data(contentsOf: TestSupport.fixtures.appendingPathComponent("report-v2.json"))
        let report = try JSONDecoder().decode(Report.self, from: data)
        #expect(report.schema == 2)
        let signal = try #require(report.series.first { $0.metric == "wifi.station.signal_dbm" }?.sketch)
        #expect(signal.hasNegativeValues && signal.count == 6)
        // The samples: −27, −27, −30, −45, −60, −61.
        for (q, exact) in [(0.0, -61.0), (0.2, -60), (0.5, -45), (0.6, -30), (1, -27)] {
            let estimate = try #require(signal.quantile(q))
            #expect(abs(estimate - exact) / abs(exact) <= 0.01, "q\(q): \(estimate)")
        }
        #expect(ReportValidator().validate(report, nowMs: report.windowEndMs + 1000) == nil)
        let again = try JSONDecoder().decode(Report.self, from: JSONEncoder().encode(report))
        #expect(again == report)
        // The same negative sketch in a schema-1 report is refused: a v1 reader would drop its values.
        var old = report
        old.schema = 1
        #expect(ReportValidator().validate(old, nowMs: report.windowEndMs + 1000)?.path == "series[0].sketch")
    }

    /// Schema 3: a report sampled for a troubleshooting session says which; the field is refused in older
    /// schemas, and a report without it is still written as schema 2 (collectors before 0.4 take it).
    @Test func schemaThreeGoldenFileCarriesTheSession() throws {
        let data = try Data(contentsOf: TestSupport.fixtures.appendingPathComponent("report-v3.json"))
        let report = try JSONDecoder().decode(Report.self, from: data)
        #expect(report.schema == 3 && report.troubleshootingSession == 17)
        #expect(ReportValidator().validate(report, nowMs: report.windowEndMs + 1000) == nil)
        #expect(try JSONDecoder().decode(Report.self, from: JSONEncoder().encode(report)) == report)
        var old = report
        old.schema = 2
        #expect(ReportValidator().validate(old, nowMs: report.windowEndMs + 1000)?.path == "troubleshooting_session")
        let plain = Report(device: "d", seq: 1, windowStartMs: 0, windowEndMs: 1, keyEpoch: 1, agentVersion: "v", series: [])
        #expect(plain.schema == 2)
        #expect(!String(decoding: try JSONEncoder().encode(plain), as: UTF8.self).contains("troubleshooting"))
        let tagged = Report(device: "d", seq: 1, windowStartMs: 0, windowEndMs: 1, keyEpoch: 1, agentVersion: "v", series: [], troubleshootingSession: 5)
        #expect(tagged.schema == 3)
    }

    @Test func docsProtocolExampleIsTheGoldenFile() throws {
        let doc = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        for name in ["report-v1.json", "report-v2.json", "report-v3.json"] {
            let golden = try String(contentsOf: TestSupport.fixtures.appendingPathComponent(name), encoding: .utf8)
            #expect(doc.contains(golden.trimmingCharacters(in: .whitespacesAndNewlines)), "docs/protocol.md shows Fixtures/\(name) verbatim")
        }
    }
}

@Suite struct QuantileSketchTests {
    /// A deterministic generator, so the test is the same on every run.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: [0.5, 0.9, 0.99])
    func quantilesAreWithinOnePercentOfExact(q: Double) throws {
        var rng = SplitMix(state: 42)
        // Rates spanning six decades, like link rates from idle to gigabit.
        let values = (0..<20_000).map { _ in pow(10, Double.random(in: 3...9, using: &rng)) }
        var sketch = QuantileSketch()
        for v in values { sketch.add(v) }
        let sorted = values.sorted()
        let exact = sorted[max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1)]
        let estimate = try #require(sketch.quantile(q))
        #expect(abs(estimate - exact) / exact <= 0.01, "q\(q): estimate \(estimate), exact \(exact)")
    }

    @Test func mergingEqualsAddingEverything() throws {
        var a = QuantileSketch(), b = QuantileSketch(), all = QuantileSketch()
        for i in 1...1000 {
            let v = Double(i * 37 % 1013) * 1000
            if i.isMultiple(of: 2) { a.add(v) } else { b.add(v) }
            all.add(v)
        }
        try a.merge(b)
        #expect(a == all)
        #expect(a.count == 1000)
    }

    /// `add(contentsOf:)` (dense counting, one merge, one collapse) gives the very sketch that adding
    /// each value in turn gives: RTT-like batches, signed values with zeros and non-finite ones, batches
    /// that pass the bucket bound onto a sketch that already holds buckets above and below them, and a
    /// batch too wide for the dense array.
    @Test(arguments: ["rtt", "signed", "past the bound", "signed past the bound", "nothing to add", "too wide"])
    func addingABatchEqualsAddingEachValue(_ shape: String) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Double {  // a fixed sequence in [0, 1)
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        var start = QuantileSketch()
        var batches: [[Double]] = []
        switch shape {
        case "rtt":
            batches = (0..<5).map { _ in (0..<3000).map { _ in 0.05 + 500 * next() * next() } }
        case "signed":
            batches = [(0..<2000).map { i in
                switch i % 7 {
                case 0: return 0
                case 1: return -90 * next()
                case 2: return 1e-12
                case 3: return i % 14 == 3 ? .nan : .infinity
                default: return 1e4 * next()
                }
            }]
        case "past the bound":
            for k in stride(from: 0, to: 2600, by: 3) { start.add(1e-3 * pow(1.0203, Double(k))) }
            batches = [(0..<4000).map { _ in 1e-4 * pow(1.0203, 3000 * next()) }, (0..<500).map { _ in 1e-9 + 1e-6 * next() }]
        case "signed past the bound":
            for k in stride(from: 0, to: 1800, by: 2) { start.add(-1e-2 * pow(1.0203, Double(k))); start.add(1e-2 * pow(1.0203, Double(k))) }
            batches = [(0..<3000).map { i in (i.isMultiple(of: 3) ? -1 : 1) * 1e-3 * pow(1.0203, 2500 * next()) }]
        case "nothing to add":
            // A decoded sketch may hold more than maxBuckets; a batch that adds no bucket leaves it as is.
            start = QuantileSketch(relativeAccuracy: 0.01, zeroCount: 1,
                                   buckets: Dictionary(uniqueKeysWithValues: (0..<Int32(QuantileSketch.maxBuckets + 10)).map { ($0, UInt64(1)) }),
                                   negativeBuckets: [:])
            batches = [[], [0, 1e-12, .nan, -.infinity]]
        default:
            batches = [(0..<1000).map { i in i.isMultiple(of: 2) ? 1e-8 * (1 + next()) : 1e200 * (1 + next()) }]
        }
        var oneByOne = start, batched = start
        for batch in batches {
            for v in batch { oneByOne.add(v) }
            batched.add(contentsOf: batch)
        }
        #expect(batched == oneByOne)
        #expect(batched.count == oneByOne.count)
        if shape.hasSuffix("past the bound") {
            #expect(batched.positiveStore.count + batched.negativeStore.count == QuantileSketch.maxBuckets)
        }
    }

    @Test func zerosAreCountedAndBucketsAreBounded() {
        var s = QuantileSketch()
        s.add(0)
        s.add(1e-12)
        #expect(s.zeroCount == 2)
        #expect(s.quantile(0.5) == 0)
        var both = QuantileSketch()
        for e in 0..<3000 { both.add(pow(1.03, Double(e))); both.add(-pow(1.03, Double(e))) }
        #expect(both.buckets.count + both.negativeBuckets.count <= QuantileSketch.maxBuckets)
        #expect(both.count == 6000)
        var wide = QuantileSketch()
        for e in 0..<3000 { wide.add(pow(1.03, Double(e))) }
        #expect(wide.buckets.count <= QuantileSketch.maxBuckets)
        #expect(wide.count == 3000)
    }

    /// Signal levels are negative: the sketch keeps them in a second store with the same relative error.
    @Test(arguments: [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    func mixedSignedQuantilesAreWithinTheRelativeError(q: Double) throws {
        var rng = SplitMix(state: 7)
        // Signal in dBm (−95…−20), SNR-like positives (5…70) and a few zeros.
        let values = (0..<10_000).map { i -> Double in
            switch i % 5 {
            case 0, 1, 2: return -Double.random(in: 20...95, using: &rng)
            case 3: return Double.random(in: 5...70, using: &rng)
            default: return i % 50 == 4 ? 0 : Double.random(in: 5...70, using: &rng)
            }
        }
        var sketch = QuantileSketch()
        for v in values { sketch.add(v) }
        let sorted = values.sorted()
        let exact = sorted[max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1)]
        let estimate = try #require(sketch.quantile(q))
        if exact == 0 { #expect(estimate == 0) } else {
            #expect(abs(estimate - exact) / abs(exact) <= QuantileSketch.defaultRelativeAccuracy, "q\(q): estimate \(estimate), exact \(exact)")
        }
    }

    @Test func signedSketchesRoundTripAndMerge() throws {
        var a = QuantileSketch(), b = QuantileSketch(), all = QuantileSketch()
        for i in 0..<400 {
            let v = Double(i - 200) * 0.75
            if i.isMultiple(of: 3) { a.add(v) } else { b.add(v) }
            all.add(v)
        }
        try a.merge(b)
        #expect(a == all)
        let decoded = try JSONDecoder().decode(QuantileSketch.self, from: JSONEncoder().encode(all))
        #expect(decoded == all)
        // A sketch without negatives encodes exactly as schema 1 did: no neg_* keys.
        var positive = QuantileSketch()
        positive.add(5)
        let json = String(decoding: try JSONEncoder().encode(positive), as: UTF8.self)
        #expect(!json.contains("neg_"))
    }

    /// The sketch as it was when its stores were dictionaries (add, merge, collapse nearest zero), kept
    /// here as the reference the sorted stores must match bucket for bucket.
    struct DictionarySketch {
        var zero: UInt64 = 0
        var positive: [Int32: UInt64] = [:], negative: [Int32: UInt64] = [:]
        let logGamma = log((1 + QuantileSketch.defaultRelativeAccuracy) / (1 - QuantileSketch.defaultRelativeAccuracy))
        mutating func add(_ v: Double) {
            guard v.isFinite else { return }
            if abs(v) <= QuantileSketch.minimumPositive { zero += 1; return }
            let i = Int32((log(abs(v)) / logGamma).rounded(.up))
            if v > 0 { positive[i, default: 0] += 1 } else { negative[i, default: 0] += 1 }
            collapse()
        }
        mutating func merge(_ o: DictionarySketch) {
            zero += o.zero
            for (i, n) in o.positive { positive[i, default: 0] += n }
            for (i, n) in o.negative { negative[i, default: 0] += n }
            collapse()
        }
        mutating func collapse() {
            while positive.count + negative.count > QuantileSketch.maxBuckets {
                if negative.count >= 2 {
                    let k = negative.keys.sorted()
                    negative[k[1], default: 0] += negative.removeValue(forKey: k[0])!
                } else if positive.count >= 2 {
                    let k = positive.keys.sorted()
                    positive[k[1], default: 0] += positive.removeValue(forKey: k[0])!
                } else { return }
            }
        }
    }

    /// Random values of both signs, from a few decades to far more buckets than a sketch keeps, added to
    /// three sketches in random order and merged: the same buckets as the dictionary reference, stores
    /// strictly ascending, and the wire form read back equal. Prints its seed; MEETPUNT_SEED replays it.
    @Test func sortedStoresMatchTheDictionaryReference() throws {
        let seed = ProcessInfo.processInfo.environment["MEETPUNT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        print("sortedStoresMatchTheDictionaryReference seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<24 {
            let decades = [3.0, 12, 60][round % 3]
            var sketches = [QuantileSketch](repeating: QuantileSketch(), count: 3)
            var references = [DictionarySketch](repeating: DictionarySketch(), count: 3)
            for _ in 0..<Int.random(in: 0...4000, using: &rng) {
                let magnitude = pow(10, Double.random(in: -decades / 2...decades / 2, using: &rng))
                let v = Int.random(in: 0..<20, using: &rng) == 0 ? 0 : (Bool.random(using: &rng) ? magnitude : -magnitude)
                let part = Int.random(in: 0..<3, using: &rng)
                sketches[part].add(v)
                references[part].add(v)
            }
            for part in 1..<3 {
                try sketches[0].merge(sketches[part])
                references[0].merge(references[part])
            }
            let merged = sketches[0], reference = references[0]
            #expect(merged.buckets == reference.positive, "seed \(seed) round \(round): positive buckets")
            #expect(merged.negativeBuckets == reference.negative, "seed \(seed) round \(round): negative buckets")
            #expect(merged.zeroCount == reference.zero)
            #expect(QuantileSketch.isStrictlyAscending(merged.positiveStore) && QuantileSketch.isStrictlyAscending(merged.negativeStore))
            #expect(merged.positiveStore.count + merged.negativeStore.count <= QuantileSketch.maxBuckets)
            #expect(try JSONDecoder().decode(QuantileSketch.self, from: JSONEncoder().encode(merged)) == merged)
            let rebuilt = QuantileSketch(relativeAccuracy: merged.relativeAccuracy, zeroCount: merged.zeroCount,
                                         buckets: merged.buckets, negativeBuckets: merged.negativeBuckets)
            #expect(rebuilt == merged)
        }
    }

    @Test func sketchesOfDifferentAccuracyDoNotMerge() {
        var a = QuantileSketch(relativeAccuracy: 0.01)
        #expect(throws: TelemetryModelError.self) { try a.merge(QuantileSketch(relativeAccuracy: 0.02)) }
    }
}

@Suite struct IdentifierGuardTests {
    static let mac = "00:1b:21:3a:4f:5e"

    /// Every common spelling of a MAC address.
    static func spellings(_ mac: String) -> [String] {
        let hex = mac.replacingOccurrences(of: ":", with: "")
        let lower = hex.lowercased(), upper = hex.uppercased()
        func grouped(_ h: String, _ size: Int, _ sep: String) -> String {
            stride(from: 0, to: 12, by: size).map { i in
                String(h[h.index(h.startIndex, offsetBy: i)..<h.index(h.startIndex, offsetBy: i + size)])
            }.joined(separator: sep)
        }
        return [lower, upper, grouped(lower, 2, ":"), grouped(upper, 2, ":"), grouped(lower, 2, "-"), grouped(upper, 2, "-"),
                grouped(lower, 4, "."), grouped(upper, 4, ".")]
    }

    /// Spellings the guard catches though `MACAddress(parsing:)` does not take them (so not in `spellings`,
    /// which the pseudonymisation tests parse).
    static func looserSpellings(_ mac: String) -> [String] {
        let hex = mac.replacingOccurrences(of: ":", with: "")
        return [".", " "].map { sep in stride(from: 0, to: 12, by: 2).map { i in
            String(hex[hex.index(hex.startIndex, offsetBy: i)..<hex.index(hex.startIndex, offsetBy: i + 2)])
        }.joined(separator: sep) }
    }

    @Test(arguments: spellings(mac) + looserSpellings(mac))
    func findsMACAddressesInEverySpelling(spelling: String) {
        #expect(IdentifierGuard().finding(in: spelling) == .macAddress)
        #expect(IdentifierGuard().finding(in: "client \(spelling) joined") == .macAddress)
        #expect(IdentifierGuard().finding(in: "enx\(spelling)") == .macAddress, "MAC-based interface names")
    }

    @Test(arguments: ["192.168.1.20", "host 10.0.0.1:443", "v.10.0.0.1", "x192.168.0.1", "fe80::1", "2001:db8::42", "fe80::1%eth0", "::ffff:10.1.2.3"])
    func findsIPAddresses(text: String) {
        let f = IdentifierGuard().finding(in: text)
        #expect(f == .ipv4Address || f == .ipv6Address, "\(text)")
    }

    @Test func pseudonymsAreNeverMistakenForIdentifiers() throws {
        // Random pseudonyms, many with long runs of hex-looking base32 characters.
        let p = Pseudonymiser(secret: try DeviceSecret(bytes: Array(repeating: 7, count: 32)))
        for i in 0..<20_000 {
            let mac = try #require(MACAddress(bytes: [2, 0, UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF), 9]))
            let pseudonym = p.pseudonym(of: mac, epoch: KeyEpoch(id: 1))
            #expect(IdentifierGuard().finding(in: pseudonym) == nil, "\(pseudonym)")
        }
    }

    @Test func findsConfiguredSSIDs() {
        let g = IdentifierGuard(ssids: ["HomeNet-5G", "abc"])
        #expect(g.finding(in: "homenet-5g") == .ssid)
        #expect(g.finding(in: "joined HomeNet-5G today") == .ssid)
        #expect(g.finding(in: "abc") == .ssid)
        #expect(g.finding(in: "abcdef") == nil, "short SSIDs only match whole values")
    }

    @Test(arguments: ["cm_4k2tqmf7zy3xabv5r6wdsgnh", "eth0", "br-lan", "link.rx_bytes", "00-1B-21", "wlan0.100", "12:30:45",
                      "1.2.3", "0.1.0", "abcdef012345abcd", "veth1234abcd"])
    func leavesOrdinaryValuesAlone(text: String) {
        #expect(IdentifierGuard().finding(in: text) == nil, "\(text)")
    }

    @Test func redactsLogLines() {
        let g = IdentifierGuard(ssids: ["Home Net"])
        #expect(g.redact("client 00:1b:21:3a:4f:5e at 192.168.1.2") == "client <redacted MAC address> at <redacted IPv4 address>")
        #expect(!g.redact("joined Home Net").contains("Home Net"))
    }
}
