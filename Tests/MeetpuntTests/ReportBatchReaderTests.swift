import CollectorCore
import Foundation
import Testing
import TelemetryModel

/// The collector's fast reader of report batches must mean exactly what `JSONDecoder` means: on every
/// body it reads, the same reports with the same bits; on every body it cannot read exactly, nil (and
/// `JSONDecoder` decides). Seeded: a failure prints the seed it replays from.
@Suite struct ReportBatchReaderTests {
    /// What JSONDecoder makes of a batch body.
    static func decoded(_ body: [UInt8]) throws -> [Report] {
        struct Batch: Decodable { let reports: [Report] }
        return try JSONDecoder().decode(Batch.self, from: Data(body)).reports
    }

    static func body(_ reports: [Report], pretty: Bool = false) throws -> [UInt8] {
        struct Batch: Encodable { let reports: [Report] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]  // the agent sorts keys
        return Array(try encoder.encode(Batch(reports: reports)))
    }

    /// Equal, with every double compared by its bits (so -0.0 and 0.0 differ).
    static func expectIdentical(_ a: [Report], _ b: [Report], seed: UInt64) {
        #expect(a == b, "seed \(seed)")
        for (x, y) in zip(a, b) {
            for (s, t) in zip(x.series, y.series) {
                #expect(zip(s.numbers, t.numbers).allSatisfy { $0.bitPattern == $1.bitPattern }, "seed \(seed): \(s.metric) \(s.numbers) vs \(t.numbers)")
                #expect(s.sketch?.relativeAccuracy.bitPattern == t.sketch?.relativeAccuracy.bitPattern, "seed \(seed)")
            }
        }
    }

    static let awkwardNumbers: [Double] = [0, -0.0, 1, -1, 0.1, 1e-12, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
                                           123_456_789.123_456_79, 1_796_145_279_681, 9_007_199_254_740_993, 0.30000000000000004, 1e21, 1e22, -6.02214076e23, 299_792_458]

    static let labelValues = ["wlan0", "5", "cm_4k2tqmf7zy3xabv5r6wdsgnh", "", "x86_pkg_temp", "Ω≈ç", "a b/c:d", "q\"uote\\ tab\t nl\n \u{1} 𝄞"]

    static func randomReport(_ rng: inout SeededGenerator, seq: UInt64) -> Report {
        func number() -> Double {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return awkwardNumbers.randomElement(using: &rng)!
            case 1: return Double(Int.random(in: -1_000_000...1_000_000, using: &rng))
            case 2: return Double.random(in: -1e6...1e6, using: &rng)
            default: return Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &rng) & 0x7FEF_FFFF_FFFF_FFFF)  // any finite double
            }
        }
        let metrics = MetricCatalog.all.map(\.name)
        var series: [Series] = []
        for _ in 0..<Int.random(in: 0...40, using: &rng) {
            var labels: [String: String] = [:]
            for k in ["interface", "band", "peer", "zone", "reason", "ünïcode", "emoji 📶"].shuffled(using: &rng).prefix(Int.random(in: 0...4, using: &rng)) {
                labels[k] = labelValues.randomElement(using: &rng)!
            }
            var sketch: QuantileSketch?
            if Bool.random(using: &rng) {
                var s = QuantileSketch(relativeAccuracy: [0.01, 0.02, 0.0001, 0.4999].randomElement(using: &rng)!)
                for _ in 0..<Int.random(in: 0...60, using: &rng) { s.add(Double.random(in: -1e5...1e9, using: &rng)) }
                sketch = s
            }
            series.append(Series(metric: metrics.randomElement(using: &rng)!, unit: "unit", labels: labels, count: Int.random(in: 1...Int.max, using: &rng),
                                 min: number(), max: number(), mean: number(), last: number(), sum: number(), sketch: sketch))
        }
        return Report(device: "dev-\(Int.random(in: 0...999, using: &rng))", seq: Bool.random(using: &rng) ? seq : UInt64.max - seq,
                      windowStartMs: Int64.random(in: Int64.min...Int64.max, using: &rng), windowEndMs: Int64.random(in: 0...Int64.max, using: &rng),
                      keyEpoch: UInt32.random(in: 0...UInt32.max, using: &rng), agentVersion: "0.5.0",
                      series: series, troubleshootingSession: Bool.random(using: &rng) ? Int64.random(in: 1...Int64.max, using: &rng) : nil,
                      schema: Int.random(in: 1...3, using: &rng))
    }

    /// `ReportJSON` (the agent's and the load generator's writer) writes the bytes `JSONEncoder` with
    /// `.sortedKeys` writes: the golden reports, every ASCII control character and escape in a label,
    /// and seeded random reports with awkward numbers (MEETPUNT_READER_SEED replays them too).
    @Test func reportJSONWritesExactlyWhatJSONEncoderWrites() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for name in ["report-v1.json", "report-v2.json", "report-v3.json"] {
            let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: TestSupport.fixtures.appendingPathComponent(name)))
            #expect(try ReportJSON.encode(report) == Array(try encoder.encode(report)), "Fixtures/\(name)")
        }
        let every = String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self)
        let escapes = Report(device: "d", seq: 1, windowStartMs: 0, windowEndMs: 1, keyEpoch: 0, agentVersion: "1",
                             series: [Series(metric: "m/\\\"", unit: every, labels: [every: every, "é": "\u{2028}\u{7f}\u{0}"], count: 1,
                                             min: -0.0, max: 1e-7, mean: 1e15, last: 1e16, sum: 123_456_789_012_345_678, sketch: nil)])
        #expect(try ReportJSON.encode(escapes) == Array(try encoder.encode(escapes)))

        let seed = UInt64(ProcessInfo.processInfo.environment["MEETPUNT_READER_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("ReportBatchReaderTests ReportJSON seed \(seed) (MEETPUNT_READER_SEED replays it)")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<300 {
            let reports = (0..<Int.random(in: 1...3, using: &rng)).map { Self.randomReport(&rng, seq: UInt64(round * 10 + $0 + 1)) }
            for report in reports {
                let ours = try ReportJSON.encode(report), theirs = Array(try encoder.encode(report))
                guard ours == theirs else {
                    Issue.record("seed \(seed), round \(round): ReportJSON wrote\n\(String(decoding: ours.prefix(3000), as: UTF8.self))\nJSONEncoder wrote\n\(String(decoding: theirs.prefix(3000), as: UTF8.self))")
                    return
                }
            }
            struct Batch: Encodable { let reports: [Report] }
            #expect(try ReportJSON.encodeBatch(reports) == Array(try encoder.encode(Batch(reports: reports))), "seed \(seed), round \(round)")
        }

        // A number JSON cannot hold is refused, as JSONEncoder refuses it, naming where it was.
        var bad = escapes
        bad.series[0].mean = .nan
        #expect(throws: (any Error).self) { try encoder.encode(bad) }
        #expect { try ReportJSON.encode(bad) } throws: { "\($0)".contains("series[0].mean") }
    }

    @Test func generatedBatchesReadExactlyAsJSONDecoderReadsThem() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["MEETPUNT_READER_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("ReportBatchReaderTests seed \(seed) (MEETPUNT_READER_SEED replays it)")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<200 {
            let reports = (0..<Int.random(in: 1...5, using: &rng)).map { Self.randomReport(&rng, seq: UInt64(round * 10 + $0 + 1)) }
            for pretty in [false, true] {
                let body = try Self.body(reports, pretty: pretty)
                guard let fast = ReportBatchReader.reports(body) else {
                    Issue.record("seed \(seed), round \(round): the fast path refused a body JSONEncoder wrote: \(String(decoding: body.prefix(2000), as: UTF8.self))")
                    return
                }
                Self.expectIdentical(fast, try Self.decoded(body), seed: seed)
                Self.expectIdentical(fast, reports, seed: seed)
            }
        }
    }

    /// Bodies whose meaning the fast path does not decide: it answers nil and JSONDecoder accepts or rejects
    /// them with its own message. Each would read differently (or not at all) if the fast path guessed.
    @Test(arguments: [
        #"{"reports":[{"agent_version":"t","device":"d\ud800","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1,"extra":true}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","device":"e","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1.0,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1e2,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":-0,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":4294967296,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":18446744073709551616,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]} x"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{"a":"1","a":"2"},"count":1,"min":0,"max":0,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{"\u0061":"1"},"count":1,"min":0,"max":0,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":0,"max":1e999,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":.5,"max":1,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":0,"max":1,"mean":0,"last":0,"sum":0,"sketch":{"alpha":0.01,"zero":0,"index":[3,3],"count":[1,1]}}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":0,"max":1,"mean":0,"last":0,"sum":0,"sketch":{"alpha":0.5,"zero":0,"index":[],"count":[]}}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":0,"max":1,"mean":0,"last":0,"sum":0,"sketch":{"alpha":0.01,"zero":0,"index":[1],"count":[]}}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":1e-400,"max":1,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":-2e-324,"max":1,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#,
        #"{"reports":[],"reports":[]}"#,
        #"{"reports":{}}"#,
        #"[]"#,
        "",
    ])
    func bodiesTheFastPathDoesNotDecideGoToJSONDecoder(body: String) {
        #expect(ReportBatchReader.reports(Array(body.utf8)) == nil)
    }

    /// Numbers at the edges of a double: the fast path reads what JSONDecoder reads, to the bit, and leaves
    /// to JSONDecoder what it refuses (an underflow to zero, an overflow).
    @Test(arguments: ["-0.0e5", "0E-400", "0.000", "0e0", "5e-324", "4.9e-324", "2.4e-324", "1e-400", "-2e-324", "1.7976931348623157e308", "1.8e308",
                      "2.2250738585072011e-308", "123456789012345678901234567890", "1E+2", "0.1e1"])
    func edgeNumbersReadAsJSONDecoderReadsThem(number: String) {
        let body = Array(#"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[{"metric":"m","unit":"u","labels":{},"count":1,"min":"#.utf8)
            + Array(number.utf8) + Array(#","max":1,"mean":0,"last":0,"sum":0}],"window_end_ms":2,"window_start_ms":1}]}"#.utf8)
        let fast = ReportBatchReader.reports(body)
        let slow = try? Self.decoded(body)
        if let fast {
            #expect(slow != nil, "\(number): JSONDecoder refuses what the fast path read as \(fast[0].series[0].min)")
            if let slow { Self.expectIdentical(fast, slow, seed: 0) }
        }
        print("edge number \(number): fast path \(fast.map { "\($0[0].series[0].min)" } ?? "undecided"), JSONDecoder \(slow.map { "\($0[0].series[0].min)" } ?? "refuses")")
    }

    /// Numbers without an exponent and with at most 15 digits skip the text parser (an exact division);
    /// longer ones still go through it. Either way every one reads, bit for bit, as `Double(String)` and
    /// JSONDecoder read it: random digit strings with every split between integer and fraction digits,
    /// signs, leading zeros after the point and the 15/16-digit boundary.
    @Test func shortDecimalsReadAsTheTextParserReadsThem() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["MEETPUNT_READER_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("ReportBatchReaderTests decimals seed \(seed) (MEETPUNT_READER_SEED replays it)")
        var rng = SeededGenerator(seed: seed)
        var numbers: [String] = ["0", "-0", "0.0", "-0.0", "0.000000000000001", "999999999999999", "-999999999999999", "9999999999999999",
                                 "0.1", "0.2", "0.3", "2.675", "1.005", "123456789012345", "12345678901234.5", "1.23456789012345"]
        while numbers.count < 3000 {
            let digits = Int.random(in: 1...17, using: &rng)
            var d = (0..<digits).map { _ in String(Int.random(in: 0...9, using: &rng)) }.joined()
            let fraction = Int.random(in: 0..<digits, using: &rng)
            var whole = String(d.prefix(digits - fraction)).drop { $0 == "0" }
            if whole.isEmpty { whole = "0" }
            d = fraction == 0 ? String(whole) : String(whole) + "." + d.suffix(fraction)
            numbers.append((Bool.random(using: &rng) ? "-" : "") + d)
        }
        let series = numbers.map { #"{"metric":"m","unit":"u","labels":{},"count":1,"min":"# + $0 + #","max":1,"mean":0,"last":0,"sum":0}"# }
        let body = Array((#"{"reports":[{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":["#
            + series.joined(separator: ",") + #"],"window_end_ms":2,"window_start_ms":1}]}"#).utf8)
        let fast = try #require(ReportBatchReader.reports(body), "seed \(seed): the fast path refused plain decimals")
        Self.expectIdentical(fast, try Self.decoded(body), seed: seed)
        for (text, s) in zip(numbers, fast[0].series) {
            #expect(s.min.bitPattern == Double(text)!.bitPattern, "seed \(seed): \(text) read as \(s.min), Double(String) gives \(Double(text)!)")
        }
    }

    /// Reading stops past the limit: a body of many tiny reports is refused before it is all read.
    @Test func aBatchOverTheLimitIsRefusedWhileReading() throws {
        let one = #"{"agent_version":"t","device":"d","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}"#
        let body = Array(("{\"reports\":[" + Array(repeating: one, count: 101).joined(separator: ",") + "]}").utf8)
        #expect(ReportBatchReader.read(body, maxReports: 100) == .tooMany)
        #expect(ReportBatchReader.read(body, maxReports: 101) != .tooMany)
        #expect(ReportBatchReader.read(Array("{\"reports\":[]}".utf8), maxReports: 0) == .reports([]))
    }

    /// Escapes JSON allows are undone as JSONDecoder undoes them.
    @Test func escapedStringsReadAlike() throws {
        let body = Array(#"{"reports":[{"agent_version":"t\/\"\\\b\f\n\r\t","device":"d\u0041\u00e9\ud834\udd1e","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#.utf8)
        let fast = try #require(ReportBatchReader.reports(body))
        Self.expectIdentical(fast, try Self.decoded(body), seed: 0)
        #expect(fast.first?.device == "dAé𝄞")
    }

    @Test func invalidUTF8InAStringGoesToJSONDecoder() {
        var body = Array(#"{"reports":[{"agent_version":"t","device":"d?","key_epoch":1,"schema":2,"seq":1,"series":[],"window_end_ms":2,"window_start_ms":1}]}"#.utf8)
        body[body.firstIndex(of: UInt8(ascii: "?"))!] = 0xFF
        #expect(ReportBatchReader.reports(body) == nil)
        #expect(throws: (any Error).self) { try Self.decoded(body) }
    }

    /// Null for the optional fields and whitespace anywhere JSON allows it are read as JSONDecoder reads them.
    @Test func nullOptionalsAndWhitespaceAreReadAlike() throws {
        let body = Array(" {\r\n\t\"reports\" : [ { \"agent_version\" : \"t\" , \"device\" : \"d\" , \"key_epoch\" : 1 , \"schema\" : 3 , \"seq\" : 7 , \"troubleshooting_session\" : null , \"series\" : [ { \"metric\" : \"link.rx_bytes\" , \"unit\" : \"bytes\" , \"labels\" : { } , \"count\" : 1 , \"min\" : -0.0 , \"max\" : 1E+2 , \"mean\" : 5e-1 , \"last\" : 0 , \"sum\" : 100 , \"sketch\" : null } ] , \"window_end_ms\" : -2 , \"window_start_ms\" : -9223372036854775808 } ] } \n".utf8)
        let fast = try #require(ReportBatchReader.reports(body))
        Self.expectIdentical(fast, try Self.decoded(body), seed: 0)
        #expect(fast.first?.series.first?.min.sign == .minus)
    }
}
