import AgentConfig
@testable import AgentCore
import Aggregation
import Foundation
import Logging
import NetlinkKit
import Pseudonymisation
import Testing
import TelemetryModel

/// The Wi-Fi sampler's bounding and derivation rules on observations of any size. (The readings themselves
/// are compared with `iw` on real hwsim radios in scripts/wifi-lab and on recorded replies in
/// Nl80211FixtureTests.)
@Suite struct WifiSamplerTests {
    static let pseudonymiser = Pseudonymiser(secret: try! DeviceSecret(bytes: [UInt8](repeating: 7, count: 32)))
    static let epoch = KeyEpoch(id: 680)

    static func observation(stations: Int, round: UInt64, surveyActive: UInt64, surveyBusy: UInt64) throws -> WifiObservation {
        var list: [[String: Any]] = []
        for i in 0..<stations {
            let peer = pseudonymiser.pseudonym(of: [0x02, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xFF)], kind: .clientMAC, epoch: epoch)
            list.append(["client": peer, "bytes64_bit": true, "chain_signal_dbm": [], "chain_signal_avg_dbm": [], "flags": ["authorized": true],
                         "signal_dbm": -30 - i % 50, "tx_duration_us": UInt64(i) * 1000 * round, "rx_duration_us": 0,
                         "rx_bytes": UInt64(i) * 100 * round, "tx_bytes": UInt64(i) * 50 * round, "tx_retries": round,
                         "tx_bitrate": ["bitrate_kbps": 144_400, "phy": "ht", "mcs": 15, "width_mhz": 20, "short_gi": true]])
        }
        let radio: [String: Any] = [
            "ifindex": 5, "name": "wlan0", "type": "ap", "band": "2.4", "frequency_mhz": 2437, "channel": 6, "channel_width": "20",
            "noise_dbm": -95, "noise_plausible": true, "survey_supported": true, "station_dump_interrupted": false,
            "survey": [["frequency_mhz": 2437, "in_use": true, "noise_dbm": -95, "active_ms": surveyActive, "busy_ms": surveyBusy,
                        "rx_ms": surveyBusy / 2, "tx_ms": surveyBusy / 4, "bss_rx_ms": surveyBusy / 8]],
            "stations": list, "neighbours": [["frequency_mhz": 2412, "channel": 1, "bss_count": 2, "signal_dbm": [-70.0, -55.0], "bsses": []]],
        ]
        let json = try JSONSerialization.data(withJSONObject: ["status": "ok", "interfaces": [radio], "dumps_interrupted": 0])
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(WifiObservation.self, from: json)
    }

    /// A 200-client AP cannot explode cardinality: N clients itemised (top by airtime), the rest in one
    /// `others` series whose counters add up, and the report passes the collector's rules.
    @Test func twoHundredClientsFoldIntoTopNAndOthers() throws {
        let sampler = try WifiSampler(config: .init(maxClients: 8), pseudonymiser: Self.pseudonymiser)
        var aggregator = WindowAggregator(maxSeries: 2000)
        var last = SampleBatch()
        for round in UInt64(1)...3 {
            var batch = SampleBatch()
            let time = SampleTime(wallMilliseconds: 1_763_884_800_000 + Int64(round) * 1000, monotonicNanoseconds: round * 1_000_000_000)
            sampler.record(try Self.observation(stations: 200, round: round, surveyActive: round * 1000, surveyBusy: round * 400),
                           events: round == 3 ? [Nl80211Event(kind: .stationRemoved, interfaceIndex: 5, reasonCode: 3, byPeer: false)] : [],
                           eventsDropped: 0, context: SampleContext(time: time, epoch: Self.epoch), into: &batch)
            for s in batch.samples { aggregator.add(s.descriptor, labels: s.labels, value: s.value) }
            last = batch
        }
        let peers = Set(last.samples.compactMap { $0.labels["peer"] })
        #expect(peers.count == 9 && peers.contains("others"), "8 itemised + others")
        // The top 8 by airtime are the stations with the highest index.
        let top = Set((192..<200).map { Self.pseudonymiser.pseudonym(of: [0x02, 0, 0, 0, UInt8($0 >> 8), UInt8($0 & 0xFF)], kind: .clientMAC, epoch: Self.epoch) })
        #expect(peers.subtracting(["others"]) == top)
        let unreported = last.samples.first { $0.descriptor.name == "wifi.radio.stations_unreported" }?.value
        #expect(unreported == 192)
        let othersAirtime = last.samples.filter { $0.descriptor.name == "wifi.station.tx_airtime" && $0.labels["peer"] == "others" }.map(\.value).reduce(0, +)
        #expect(othersAirtime == Double((0..<192).reduce(0) { $0 + $1 * 1000 }), "others carries the airtime of the 192 folded stations")
        let utilisation = last.samples.first { $0.descriptor.name == "wifi.radio.channel_utilisation" }?.value
        #expect(utilisation == 0.4)
        #expect(last.samples.first { $0.descriptor.name == "wifi.radio.disassociations" }?.labels["reason"] == "3")
        let (series, dropped) = aggregator.drain()
        #expect(dropped == 0)
        #expect(series.count < 400, "bounded: \(series.count) series for 200 clients")
        let signal = try #require(series.first { $0.metric == "wifi.station.signal_dbm" && $0.labels["peer"] == "others" })
        #expect(signal.sketch?.hasNegativeValues == true && signal.min < -70)
        let report = Report(device: "dev-wifi", seq: 1, windowStartMs: 1_763_884_800_000, windowEndMs: 1_763_884_803_000, keyEpoch: Self.epoch.id,
                            agentVersion: "0.2.0", series: series)
        #expect(ReportValidator().validate(report, nowMs: 1_763_884_804_000) == nil)
    }

    /// Channel shares from survey counters that moved for a few milliseconds (the last sample before a
    /// stop) are not taken: the survey counts whole milliseconds. The next interval has its share.
    @Test func noChannelShareOverAFewMilliseconds() throws {
        let sampler = try WifiSampler(config: .init(maxClients: 8), pseudonymiser: Self.pseudonymiser)
        func utilisation(at ms: UInt64, active: UInt64, busy: UInt64) throws -> Double? {
            var batch = SampleBatch()
            let time = SampleTime(wallMilliseconds: 1_763_884_800_000 + Int64(ms), monotonicNanoseconds: ms * 1_000_000)
            sampler.record(try Self.observation(stations: 1, round: 1, surveyActive: active, surveyBusy: busy), events: [], eventsDropped: 0,
                           context: SampleContext(time: time, epoch: Self.epoch), into: &batch)
            return batch.samples.first { $0.descriptor.name == "wifi.radio.channel_utilisation" }?.value
        }
        #expect(try utilisation(at: 1_000, active: 1_000, busy: 400) == nil, "the first reading is a baseline")
        #expect(try utilisation(at: 1_006, active: 1_006, busy: 406) == nil, "6 ms, all of them busy: no share")
        #expect(try utilisation(at: 3_006, active: 3_006, busy: 1_206) == 0.4)
    }

    /// On a host without nl80211 the sampler reports that status and adds nothing.
    @Test func hostWithoutWifiObservesStatusOnly() throws {
        let sampler = try WifiSampler(config: .init(), pseudonymiser: Self.pseudonymiser)
        let o = try sampler.observe(epoch: Self.epoch)
        if o.status == .noNl80211 {
            var batch = SampleBatch()
            try sampler.sample(SampleContext(time: .now(), epoch: Self.epoch), into: &batch)
            #expect(batch.samples.isEmpty)
            #expect(o.message?.contains("no Wi-Fi") == true)
        } else {
            #expect(o.status == .noWirelessInterfaces || o.status == .ok)
        }
    }
}

@Suite struct HealthSamplerTests {
    /// Real /proc of this host; thermal zones from a tree made here (this VM has none).
    @Test func readsProcAndThermalZones() throws {
        let dir = try TestSupport.tempDirectory()
        for (i, (type, milli)) in [("x86_pkg_temp", "51500"), ("acpitz", "40000"), ("x86_pkg_temp", "48000")].enumerated() {
            let zone = dir.appendingPathComponent("class/thermal/thermal_zone\(i)")
            try FileManager.default.createDirectory(at: zone, withIntermediateDirectories: true)
            try "\(type)\n".write(to: zone.appendingPathComponent("type"), atomically: true, encoding: .utf8)
            try "\(milli)\n".write(to: zone.appendingPathComponent("temp"), atomically: true, encoding: .utf8)
        }
        let sampler = HealthSampler(config: .init(enabled: true, procRoot: "/proc", sysRoot: dir.path))
        var first = SampleBatch(), second = SampleBatch()
        try sampler.sample(SampleContext(time: .now(), epoch: KeyEpoch(id: 1)), into: &first)
        usleep(300_000)  // /proc/stat counts in clock ticks (10 ms): let it move
        try sampler.sample(SampleContext(time: .now(), epoch: KeyEpoch(id: 1)), into: &second)
        func value(_ batch: SampleBatch, _ name: String) -> Double? { batch.samples.first { $0.descriptor.name == name }?.value }
        let busy = try #require(value(second, "system.cpu_busy"))
        #expect(busy >= 0 && busy <= 1)
        #expect(value(first, "system.cpu_busy") == nil, "the first reading is a baseline")
        let available = try #require(value(second, "system.memory_available"))
        let total = try #require(value(second, "system.memory_total"))
        #expect(available > 0 && available <= total)
        #expect(value(second, "system.load1") != nil)
        let temps = second.samples.filter { $0.descriptor.name == "system.temperature" }
        #expect(temps.map { $0.labels["zone"]! } == ["x86_pkg_temp", "acpitz", "x86_pkg_temp-2"])
        #expect(temps.map(\.value) == [51.5, 40, 48])
    }

    /// A CPU share needs more than a few milliseconds of /proc/stat ticks: a reading that soon after the
    /// last gives none and leaves the baseline, so the next share spans both intervals.
    @Test func aCPUShareIsNotTakenOverAFewMilliseconds() throws {
        let sampler = HealthSampler(config: .init(enabled: true, procRoot: "/proc", sysRoot: "/nonexistent"))
        let t0 = SampleTime.now()
        func at(_ ms: UInt64) -> SampleContext {
            SampleContext(time: SampleTime(wallMilliseconds: t0.wallMilliseconds + Int64(ms), monotonicNanoseconds: t0.monotonicNanoseconds + ms * 1_000_000),
                          epoch: KeyEpoch(id: 1))
        }
        func busy(_ batch: SampleBatch) -> Double? { batch.samples.first { $0.descriptor.name == "system.cpu_busy" }?.value }
        var first = SampleBatch(), soon = SampleBatch(), later = SampleBatch()
        try sampler.sample(at(0), into: &first)
        try sampler.sample(at(6), into: &soon)
        #expect(busy(soon) == nil, "no share over 6 ms")
        usleep(300_000)  // real ticks for the share below
        try sampler.sample(at(2_000), into: &later)
        let share = try #require(busy(later), "a share once the interval is long enough")
        #expect(share >= 0 && share <= 1)
    }
}
