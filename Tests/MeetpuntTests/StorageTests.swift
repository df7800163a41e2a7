@testable import CollectorCore
import Foundation
import GRDB
import Testing
import TelemetryModel

/// The compact storage: what goes in comes out, bit for bit; a database written by the schema before it
/// is carried forward without losing a value.
@Suite struct StorageTests {
    static func sample() -> [Series] {
        var rtt = QuantileSketch()
        for v in [0.0, 0.4, 12.5, 13, 250, 1e-12, 7.25] { rtt.add(v) }
        var signal = QuantileSketch()
        for v in [-27.0, -27, -30, -45, -60, -61] { signal.add(v) }
        var wide = QuantileSketch(relativeAccuracy: 0.02)
        wide.add(1e9)
        return [
            Series(metric: "link.rx_bytes", unit: "bytes", labels: ["interface": "eth0"], count: 6, min: 800, max: 4100, mean: 2000, last: 1250, sum: 12000, sketch: nil),
            Series(metric: "traffic.rtt_ms", unit: "milliseconds", labels: ["leg": "wan", "method": "handshake"], count: 7, min: 0, max: 250,
                   mean: 283.15 / 7, last: 7.25, sum: 283.15, sketch: rtt),
            Series(metric: "wifi.station.signal_dbm", unit: "dbm", labels: ["interface": "wlan1", "band": "5", "peer": "cm_4k2tqmf7zy3xabv5r6wdsgnh"],
                   count: 6, min: -61, max: -27, mean: -41.666666666666664, last: -61, sum: -250, sketch: signal),
            Series(metric: "system.temperature", unit: "celsius", labels: ["zone": "x86_pkg_temp"], count: 3, min: 51, max: 52.3, mean: 0.1 + 51.5, last: -0.0,
                   sum: 154.5, sketch: wide),
            Series(metric: "agent.dropped_span_start_ms", unit: "unix_milliseconds", labels: [:], count: 1, min: 1_796_145_279_681,
                   max: 1_796_145_279_681, mean: 1_796_145_279_681, last: 1_796_145_279_681, sum: 1_796_145_279_681, sketch: nil),
        ]
    }

    @Test(arguments: [1, 2, 3, 4]) func everyValueRoundTripsBitForBit(codec: Int) throws {
        let series = Self.sample()
        let back = try SeriesCodec.decompress(try SeriesCodec.compress(series, codec: codec), codec: codec, seriesCount: series.count)
        #expect(back == series)
        for (a, b) in zip(series, back) {
            for (x, y) in [(a.min, b.min), (a.max, b.max), (a.mean, b.mean), (a.last, b.last), (a.sum, b.sum)] {
                #expect(x.bitPattern == y.bitPattern, "\(a.metric): \(x) came back as \(y)")
            }
        }
    }

    /// The payload format is a wire format of its own: the golden file decodes forever.
    @Test func theVersion1GoldenPayloadStillDecodes() throws {
        let url = TestSupport.fixtures.appendingPathComponent("storage/series-codec-v1.bin")
        if !FileManager.default.fileExists(atPath: url.path) {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            Issue.record("golden file missing; writing it for review at \(url.path)")
            try Data(SeriesCodec.encode(Self.sample())).write(to: url)
        }
        #expect(try SeriesCodec.decode([UInt8](Data(contentsOf: url))) == Self.sample())
    }

    /// Codec 2 is the same encoding compressed with built-in dictionary 1: the golden frame (written with it)
    /// decodes forever, so the dictionary can never change under stored rows.
    @Test func theCodec2GoldenPayloadStillDecodesWithDictionary1() throws {
        let url = TestSupport.fixtures.appendingPathComponent("storage/series-codec-v2-dictionary-1.zst")
        if !FileManager.default.fileExists(atPath: url.path) {
            Issue.record("golden file missing; writing it for review at \(url.path)")
            try Data(SeriesCodec.compress(Self.sample(), codec: 2)).write(to: url)
        }
        let golden = [UInt8](try Data(contentsOf: url))
        #expect(PayloadDictionaries.dictionaryID(ofFrame: golden) == PayloadDictionaries.all[0].id)
        #expect(try SeriesCodec.decompress(golden, codec: 2, seriesCount: 5) == Self.sample())
        // A frame that names a dictionary this collector lacks fails with a reason naming it.
        var foreign = golden
        let descriptor = golden[4]  // after the magic number: single segment (bit 5), dictionary id size (bits 0–1, 3 = 4 bytes)
        try #require(descriptor & 3 == 3)
        let at = descriptor & 0x20 != 0 ? 5 : 6
        foreign.replaceSubrange(at..<(at + 4), with: [0x78, 0x56, 0x34, 0x12])
        #expect(PayloadDictionaries.dictionaryID(ofFrame: foreign) == 0x1234_5678)
        #expect { try SeriesCodec.decompress(foreign, codec: 2, seriesCount: 5) } throws: { "\($0)".contains("305419896") }
        // The dictionary makes a real agent's payload smaller than zstd alone.
        #expect(try SeriesCodec.compress(Self.sample(), codec: 2).count < SeriesCodec.compress(Self.sample(), codec: 1).count)
    }

    /// Codec 3 is format 2 compressed with built-in dictionary 2; both golden files decode forever.
    @Test func theFormat2AndCodec3GoldenPayloadsStillDecode() throws {
        let raw = TestSupport.fixtures.appendingPathComponent("storage/series-codec-format2.bin")
        let frame = TestSupport.fixtures.appendingPathComponent("storage/series-codec-v3-dictionary-2.zst")
        if !FileManager.default.fileExists(atPath: raw.path) || !FileManager.default.fileExists(atPath: frame.path) {
            Issue.record("golden files missing; writing them for review")
            try Data(SeriesCodec.encode(Self.sample(), format: 2)).write(to: raw)
            try Data(SeriesCodec.compress(Self.sample(), codec: 3)).write(to: frame)
        }
        let rawBytes = [UInt8](try Data(contentsOf: raw))
        #expect(rawBytes.first == 2)
        #expect(try SeriesCodec.decode(rawBytes) == Self.sample())
        let golden = [UInt8](try Data(contentsOf: frame))
        #expect(PayloadDictionaries.dictionaryID(ofFrame: golden) == PayloadDictionaries.all[1].id)
        #expect(try SeriesCodec.decompress(golden, codec: 3, seriesCount: 5) == Self.sample())
        // Format 2 leaves out what the rest implies: smaller before compression and after.
        #expect(SeriesCodec.encode(Self.sample(), format: 2).count < SeriesCodec.encode(Self.sample(), format: 1).count)
        #expect(try SeriesCodec.compress(Self.sample(), codec: 3).count < SeriesCodec.compress(Self.sample(), codec: 2).count)
    }

    /// Codec 4 is format 3 compressed with built-in dictionary 3 in a bare frame (no magic number, no
    /// dictionary id: the codec names both); both golden files decode forever.
    @Test func theFormat3AndCodec4GoldenPayloadsStillDecode() throws {
        let raw = TestSupport.fixtures.appendingPathComponent("storage/series-codec-format3.bin")
        let frame = TestSupport.fixtures.appendingPathComponent("storage/series-codec-v4-dictionary-3.zst")
        if !FileManager.default.fileExists(atPath: raw.path) || !FileManager.default.fileExists(atPath: frame.path) {
            Issue.record("golden files missing; writing them for review")
            try Data(SeriesCodec.encode(Self.sample(), format: 3)).write(to: raw)
            try Data(SeriesCodec.compress(Self.sample(), codec: 4)).write(to: frame)
        }
        let rawBytes = [UInt8](try Data(contentsOf: raw))
        #expect(rawBytes.first == 3)
        #expect(try SeriesCodec.decode(rawBytes) == Self.sample())
        // Format 3 holds format 2's bytes in another order: the same length.
        #expect(rawBytes.count == SeriesCodec.encode(Self.sample(), format: 2).count)
        let golden = [UInt8](try Data(contentsOf: frame))
        #expect(Array(golden.prefix(4)) != [0x28, 0xB5, 0x2F, 0xFD], "a bare frame has no magic number")
        #expect(try SeriesCodec.decompress(golden, codec: 4, seriesCount: 5) == Self.sample())
        // A bare frame is a standard zstd frame without its magic number (and written without the
        // dictionary id): with the four bytes put back, zstd's own header reader takes it.
        #expect(PayloadDictionaries.contentSize(ofFrame: [0x28, 0xB5, 0x2F, 0xFD] + golden, bare: false) == UInt64(rawBytes.count))
        // Damaged bare frames fail with a reason: empty, cut inside the header, cut inside the block, a
        // trailing byte, a header claiming 1 GiB.
        for damaged in [[], [0x20], Array(golden.prefix(3)), Array(golden.dropLast(5)), golden + [0],
                        [0xE0, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 0, 0]] as [[UInt8]] {
            #expect(throws: SeriesCodec.DecodingFailure.self, "\(damaged.prefix(12))") { try SeriesCodec.decompress(damaged, codec: 4, seriesCount: 5) }
        }
        // A bare frame is not read as a standard one, nor a standard frame as a bare one.
        #expect(throws: SeriesCodec.DecodingFailure.self) { try SeriesCodec.decompress(golden, codec: 3, seriesCount: 5) }
        #expect(throws: SeriesCodec.DecodingFailure.self) { try SeriesCodec.decompress(try SeriesCodec.compress(Self.sample(), codec: 3), codec: 4, seriesCount: 5) }
    }

    /// Format 3's layout, written by hand from docs/storage.md rather than by the encoder: one series
    /// (metric `m`, unit `u`, no labels, flags 0), then the count column, and min, max, last and sum each
    /// as a tag column and a value column.
    @Test func aFormat3PayloadWrittenFromTheDocumentDecodes() throws {
        let bytes: [UInt8] = [3, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0, 4, 1, 5, 1, 7, 1, 6, 5, 0x14]
        let series = try SeriesCodec.decode(bytes)
        #expect(series == [Series(metric: "m", unit: "u", labels: [:], count: 4, min: 5, max: 7, mean: 0.25, last: 6, sum: 1, sketch: nil)])
    }

    /// Format 2's and 3's numbers (integers, decimals of up to nine digits, float32, float64) and their
    /// left-out values (max = min, last = min or max, count = the sketch's total) come back bit for bit, for
    /// values drawn at random from every kind. Replay a failure with MEETPUNT_SEED.
    @Test(arguments: [UInt8(2), 3]) func numbersComeBackBitForBitWhateverTheirKind(format: UInt8) throws {
        let seed = ProcessInfo.processInfo.environment["MEETPUNT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        print("numbersComeBackBitForBitWhateverTheirKind format \(format) seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        func value() -> Double {
            switch Int.random(in: 0..<9, using: &rng) {
            case 0: return Double(Int.random(in: -1_000_000...1_000_000, using: &rng))
            case 1: return Double(Int.random(in: -99_999_999...99_999_999, using: &rng)) / [10.0, 100, 1000, 1e6, 1e9][Int.random(in: 0..<5, using: &rng)]
            case 2: return Double.random(in: -1e9...1e9, using: &rng)
            case 3: return Double(Float.random(in: -1000...1000, using: &rng))
            case 4: return [0.0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 9.0e15, -9.0e15, 0.1 + 0.2][Int.random(in: 0..<8, using: &rng)]
            case 5: return Double.random(in: 0...1, using: &rng) * pow(10, Double(Int.random(in: -300...300, using: &rng)))
            case 6: return Double(Int.random(in: 0...Int(1 << 53), using: &rng)) / 10
            case 7: return 14_643_533.6
            default: return Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &rng) & ~(0x7FF << 52))  // subnormals and small values
            }
        }
        var series: [Series] = []
        for i in 0..<2_000 {
            let a = value(), b = value(), c = value()
            var sketch: QuantileSketch?
            var count = Int.random(in: 1...1000, using: &rng)
            if i % 3 == 0 {
                // Every ninth series a sketch of another α, and every ninth one with no value at all (both stores empty).
                var sk = i % 9 == 3 ? QuantileSketch(relativeAccuracy: 0.02) : QuantileSketch()
                if i % 9 != 6 {
                    for _ in 0..<Int.random(in: 1...40, using: &rng) { sk.add(Double.random(in: -1e4...1e4, using: &rng)) }
                    if i % 2 == 0 { count = Int(sk.zeroCount + sk.buckets.values.reduce(0, +) + sk.negativeBuckets.values.reduce(0, +)) }
                }
                sketch = sk
            }
            // Every equality format 2 leaves out, and none.
            let min = a, max = i % 5 == 0 ? a : b, last = [a, max, c, -0.0][i % 4]
            let sum = c * Double(count)
            series.append(Series(metric: "m\(i % 7)", unit: "u", labels: ["k": "v\(i % 3)"], count: count, min: min, max: max,
                                 mean: i % 2 == 0 ? sum / Double(count) : value(), last: last, sum: sum, sketch: sketch))
        }
        let back = try SeriesCodec.decode(SeriesCodec.encode(series, format: format))
        #expect(back.count == series.count)
        for (x, y) in zip(series, back) {
            #expect(x == y, "seed \(seed)")
            for (p, q) in [(x.min, y.min), (x.max, y.max), (x.mean, y.mean), (x.last, y.last), (x.sum, y.sum)] where p.bitPattern != q.bitPattern {
                Issue.record("seed \(seed): \(p) came back as \(q)")
            }
        }
    }

    @Test(arguments: [[UInt8]([]), [2, 0], [1, 1, 0], [1, 1, 1, 1, 0x6D, 0, 0, 0, 0, 9, 0], [1, 0, 0, 0xFF],
                      // format 2: flags with last = min and last = max; a sketch-derived count without a sketch;
                      // a decimal cut short; an unknown format
                      [2, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0x30, 1, 1, 1, 1], [2, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0x40, 1, 1, 1, 1],
                      [2, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0, 3, 7], [4, 0, 0],
                      // format 3: an unknown tag in the min column; a payload cut short; a trailing byte
                      [3, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0, 4, 14, 5, 1, 7, 1, 6, 5, 0x14],
                      [3, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0, 4, 1, 5, 1, 7, 1, 6, 5],
                      [3, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 0, 4, 1, 5, 1, 7, 1, 6, 5, 0x14, 0],
                      // an index into an empty string table; a sketch index delta of 2^63; a stored α that is NaN
                      [2, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                      [2, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 2, 1, 0, 0, 0, 0, 0, 2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 1, 0],
                      [2, 1, 2, 1, 0x6D, 1, 0x75, 0, 1, 0, 6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xF8, 0x7F, 0, 0, 0]])
    func corruptPayloadsFailWithAReasonNotACrash(bytes: [UInt8]) {
        #expect(throws: SeriesCodec.DecodingFailure.self) { try SeriesCodec.decode(bytes) }
    }

    /// A stored row that no longer decodes (a damaged disk, a payload cut short) fails the read with the row
    /// named, not a bare codec message; the other devices' rows still read.
    @Test func aDamagedStoredRowIsNamedWhenItFailsToDecode() async throws {
        let dir = try TestSupport.tempDirectory()
        let path = dir.appendingPathComponent("c.sqlite").path
        let store = try SQLiteStore(path: path)
        let series = Self.sample()
        let classes = series.map { MetricCatalog.descriptor(named: $0.metric)?.dataClass ?? .traffic }
        for device in ["dmg-1", "dmg-2"] {
            _ = try await store.addDevice(device, nowMs: 0)
            let r = Report(device: device, seq: 7, windowStartMs: 1_000, windowEndMs: 301_000, keyEpoch: 1, agentVersion: "t", series: series)
            _ = try await store.ingest([(r, classes)], receivedAtMs: 302_000)
        }
        let q = try DatabaseQueue(path: path)
        try await q.write { db in
            try db.execute(sql: "UPDATE report_data SET payload = substr(payload, 1, 20) WHERE device_id = 'dmg-1' AND data_class = 'link'")
        }
        let cutoffs = RetentionPolicy.defaults.cutoffs(nowMs: 302_000)
        await #expect { try await store.windows(device: "dmg-1", metric: nil, fromMs: 0, toMs: .max, cutoffs: cutoffs, limit: .max) } throws: { error in
            let text = "\(error)"
            return text.contains("device dmg-1") && text.contains("report 7") && text.contains("class link") && text.contains("window ending at 301000 ms")
        }
        #expect(try await store.windows(device: "dmg-2", metric: nil, fromMs: 0, toMs: .max, cutoffs: cutoffs, limit: .max).count == series.count)
    }

    /// Group commit: concurrent requests share transactions, and each still gets its own outcome: of 400
    /// concurrent submissions of 200 distinct reports, 200 are stored and 200 answered duplicate.
    @Test func concurrentIngestsShareTransactionsAndEachGetsItsOwnOutcome() async throws {
        let dir = try TestSupport.tempDirectory()
        let store = try SQLiteStore(path: dir.appendingPathComponent("c.sqlite").path)
        _ = try await store.addDevice("gc-1", nowMs: 0)
        let series = Self.sample()
        let classes = series.map { MetricCatalog.descriptor(named: $0.metric)?.dataClass ?? .traffic }
        let outcomes = try await withThrowingTaskGroup(of: IngestOutcome.self) { group in
            for i in 0..<400 {
                let r = Report(device: "gc-1", seq: UInt64(i % 200 + 1), windowStartMs: 1_000, windowEndMs: 2_000 + Int64(i % 200), keyEpoch: 1,
                               agentVersion: "t", series: series)
                group.addTask { try await store.ingest([(r, classes)], receivedAtMs: 3_000)[0] }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .duplicate }.count == 200)
        #expect(outcomes.filter { $0 == .stored(series: series.count) }.count == 200)
        #expect(try await store.devices().first?.reports == 200)
        let windows = try await store.windows(device: "gc-1", metric: nil, fromMs: 0, toMs: .max, cutoffs: RetentionPolicy.defaults.cutoffs(nowMs: 3_000), limit: .max)
        #expect(windows.count == 200 * series.count, "every series of every report, once")
    }

    /// Acceptance 6: the database a 0.3.0 collector wrote (one row per series) is migrated, and the export
    /// returns every stored window exactly as that collector did.
    @Test func aDatabaseInTheOldSchemaIsMigratedWithoutLosingAValue() async throws {
        let dir = try TestSupport.tempDirectory()
        let path = dir.appendingPathComponent("legacy.sqlite").path
        try FileManager.default.copyItem(at: TestSupport.fixtures.appendingPathComponent("legacy-schema-v2.sqlite"), to: URL(fileURLWithPath: path))
        let golden = try JSONDecoder().decode(DeviceExport.self, from: Data(contentsOf: TestSupport.fixtures.appendingPathComponent("legacy-schema-v2-export.json")))
        let store = try SQLiteStore(path: path)
        let api = CollectorAPI(store: store, policy: .defaults, configuration: CollectorConfiguration(sqlitePath: path, retentionFile: ""),
                               clock: { golden.exportedAtMs }, logger: .init(label: "test"))
        let export = try await api.exportData(device: "legacy-1")
        var compared = 0
        for (c, data) in golden.classes {
            let migrated = try #require(export.classes[c])
            #expect(migrated.windows.count == data.windows.count, "\(c)")
            for (a, b) in zip(data.windows, migrated.windows) {
                #expect(a == b, "\(c): \(a.metric) \(a.labels)")
                compared += 1
            }
        }
        #expect(compared == 460, "every window of the fixture was compared")
        let q = try DatabaseQueue(path: path)
        let oldTableLeft = try await q.read { db in try db.tableExists("series_windows") }
        #expect(!oldTableLeft)
        let devices = try await store.devices()
        #expect(devices.first { $0.id == "legacy-1" }?.reports == 5)
        #expect(try await store.settings(device: "legacy-1")?.version == 1, "the settings survived too")
    }
}

/// What summaries call "the latest window": a stopping agent's partial window is passed over.
@Suite struct NewestFullLengthWindowTests {
    static func window(_ startMs: Int64, _ endMs: Int64, mean: Double) -> StoredWindow {
        StoredWindow(deviceID: "d", seq: endMs, dataClass: "link", metric: "link.rx_rate", unit: "bits_per_second",
                     labels: ["interface": "eth0"], windowStartMs: startMs, windowEndMs: endMs, count: 5,
                     min: 0, max: mean * 2, mean: mean, last: mean, sum: mean * 5)
    }

    @Test func aPartialWindowOfMillisecondsIsPassedOver() {
        // As the demo stored them: 10-second windows, then 6 ms shipped when the agent stopped.
        let windows = [Self.window(0, 10_000, mean: 1_800), Self.window(10_000, 20_000, mean: 2_400),
                       Self.window(20_000, 20_006, mean: 0)]
        #expect(windows.newestFullLength()?.windowEndMs == 20_000)
        #expect(windows.newestFullLength()?.mean == 2_400)
        // A window cut short by new settings still counts when at least half the longest.
        #expect((windows + [Self.window(20_006, 26_000, mean: 900)]).newestFullLength()?.windowEndMs == 26_000)
        #expect([StoredWindow]().newestFullLength() == nil)
        #expect([Self.window(0, 6, mean: 0)].newestFullLength()?.windowEndMs == 6, "a device with only a partial window shows that one")
    }
}
