import CollectorCore
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

    @Test func everyValueRoundTripsBitForBit() throws {
        let series = Self.sample()
        let back = try SeriesCodec.decompress(try SeriesCodec.compress(series), codec: 1, seriesCount: series.count)
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

    @Test(arguments: [[UInt8]([]), [2, 0], [1, 1, 0], [1, 1, 1, 1, 0x6D, 0, 0, 0, 0, 9, 0], [1, 0, 0, 0xFF]])
    func corruptPayloadsFailWithAReasonNotACrash(bytes: [UInt8]) {
        #expect(throws: SeriesCodec.DecodingFailure.self) { try SeriesCodec.decode(bytes) }
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
