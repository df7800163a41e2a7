import AgentConfig
import Aggregation
import Logging
import NetlinkKit
import Pseudonymisation
import TelemetryModel

/// Samples Wi-Fi through nl80211: per radio (channel, width, tx power, noise, survey utilisation), per
/// station (signal, SNR, rates, counters, airtime, queues), neighbours per channel from the scan cache,
/// and association events. Every MAC address and SSID is pseudonymised inside ``observe(epoch:)`` and
/// never kept raw across calls. See docs/metrics.md for each metric.
public final class WifiSampler: Sampler {
    public let name = "wifi"
    private let config: AgentConfiguration.WiFi
    private let pseudonymiser: Pseudonymiser
    private let logger: Logger?
    private let client: Nl80211Client?
    private let events: Nl80211EventMonitor?
    private var lastStatus: WifiObservation.Status?
    private var stationCounters = CounterTracker<String>(maxKeys: 4096)
    private var surveyCounters = CounterTracker<String>(maxKeys: 1024)
    private var previousStations: [UInt32: Set<String>] = [:]
    private var previousEpoch: KeyEpoch?
    private var noiseJudges: [UInt32: NoiseJudge] = [:]
    private var lastScanTrigger: [UInt32: UInt64] = [:]
    private var interruptedSeen = 0

    /// Opens nl80211 in the calling thread's network namespace. A host without nl80211 is not an error:
    /// the sampler reports that status and keeps trying nothing else.
    public init(config: AgentConfiguration.WiFi, pseudonymiser: Pseudonymiser, logger: Logger? = nil) throws {
        self.config = config
        self.pseudonymiser = pseudonymiser
        self.logger = logger
        self.client = try Nl80211Client.open()
        self.events = client == nil ? nil : try Nl80211EventMonitor.open()
    }

    /// Reads everything once and pseudonymises it with `epoch`'s key.
    public func observe(epoch: KeyEpoch) throws -> WifiObservation {
        guard let client else {
            return WifiObservation(status: .noNl80211, message: "nl80211 is not available (no cfg80211 in this kernel): no Wi-Fi on this host")
        }
        let before = client.interruptedDumps
        let all = try client.interfaces()
        let selected = all.filter { w in
            [.ap, .station, .meshPoint].contains(w.mode) && config.interfaces.contains { globMatches($0, w.name) }
        }
        var observation = WifiObservation(status: selected.isEmpty ? .noWirelessInterfaces : .ok)
        observation.regulatoryCountry = try? client.regulatoryCountry()
        if selected.isEmpty {
            observation.message = all.isEmpty
                ? "nl80211 has no wireless interfaces"
                : "nl80211 has no AP, station or mesh interface matching wifi.interfaces (\(all.count) other wireless interface(s))"
            return observation
        }
        // The router's own addresses: a sibling radio's BSS is not a neighbour.
        let ownAddresses = Set(all.compactMap(\.macAddress))
        for w in selected {
            observation.interfaces.append(try observe(w, client: client, epoch: epoch, ownAddresses: ownAddresses))
        }
        observation.dumpsInterrupted = client.interruptedDumps - before
        return observation
    }

    private func observe(_ w: WirelessInterface, client: Nl80211Client, epoch: KeyEpoch, ownAddresses: Set<[UInt8]>) throws -> WifiObservation.Radio {
        let survey = try client.survey(ifindex: w.ifindex)
        let operating = survey.flatMap { s in s.first(where: \.inUse) ?? s.first { $0.frequencyMHz == w.frequencyMHz } }
        let (noisePlausible, noiseProblem) = judgeNoise(operating?.noiseDBm.map(Int.init), ifindex: w.ifindex)
        var radio = WifiObservation.Radio(
            ifindex: w.ifindex, name: Self.label(w.name, ifindex: w.ifindex), type: w.mode.rawValue,
            band: w.frequencyMHz.map(Nl80211Channel.band) ?? "other", wiphy: w.wiphy, frequencyMhz: w.frequencyMHz,
            channel: w.channel, channelWidth: w.channelWidth, centerFreq1Mhz: w.centerFrequency1MHz, centerFreq2Mhz: w.centerFrequency2MHz,
            txPowerDbm: w.txPowerMBm.map { Double($0) / 100 },
            ssid: w.ssid.map { pseudonymiser.pseudonym(of: $0, kind: .ssid, epoch: epoch) },
            bssid: w.mode == .ap ? w.macAddress.map { pseudonymiser.pseudonym(of: $0, kind: .bssid, epoch: epoch) } : nil,
            noiseDbm: operating?.noiseDBm.map(Int.init), noisePlausible: noisePlausible, noiseProblem: noiseProblem,
            surveySupported: survey != nil)
        radio.survey = (survey ?? []).map(WifiObservation.SurveyChannel.init)

        let dump = try client.stations(ifindex: w.ifindex)
        radio.stationDumpInterrupted = dump.interrupted
        // On a station interface the peer is the upstream AP: a BSSID, not a client.
        let peerKind: PseudonymKind = w.mode == .station ? .bssid : .clientMAC
        let noise = noisePlausible ? operating?.noiseDBm.map(Int.init) : nil
        radio.stations = dump.stations.map { s in
            let snr = zip2(s.signalDBm.map(Int.init), noise).map { $0 - $1 }
            return WifiObservation.Station(s, peer: pseudonymiser.pseudonym(of: s.macAddress, kind: peerKind, epoch: epoch), snr: snr)
        }

        var byFrequency: [UInt32: [WifiObservation.NeighbourBSS]] = [:]
        for b in try client.scanResults(ifindex: w.ifindex) where !ownAddresses.contains(b.bssid) {
            guard let f = b.frequencyMHz else { continue }
            byFrequency[f, default: []].append(WifiObservation.NeighbourBSS(
                bssid: pseudonymiser.pseudonym(of: b.bssid, kind: .neighbourBSSID, epoch: epoch),
                ssid: b.ssid.flatMap { $0.isEmpty ? nil : pseudonymiser.pseudonym(of: $0, kind: .ssid, epoch: epoch) },
                signalDbm: b.signalMBm.map { Double($0) / 100 }))
        }
        radio.neighbours = byFrequency.keys.sorted().map { f in
            let list = byFrequency[f]!
            return WifiObservation.NeighbourChannel(frequencyMhz: f, channel: Nl80211Channel.number(frequencyMHz: f), bssCount: list.count,
                                                    signalDbm: list.compactMap(\.signalDbm).sorted(), bsses: list)
        }
        return radio
    }

    private func judgeNoise(_ noise: Int?, ifindex: UInt32) -> (Bool, String?) {
        var judge = noiseJudges[ifindex] ?? NoiseJudge(constantAfter: config.noiseConstantSamples)
        let verdict = judge.judge(noise)
        noiseJudges[ifindex] = judge
        return verdict
    }

    /// Names that embed a MAC address (`wlx00c0ca…` from systemd for USB adapters) become prefix + ifindex.
    static func label(_ name: String, ifindex: UInt32) -> String {
        guard IdentifierGuard().finding(in: name) != nil else { return name }
        let prefix = name.prefix { $0.isLetter }.prefix(4)
        return "\(prefix.isEmpty ? "if" : String(prefix))-if\(ifindex)"
    }

    // MARK: Sampling

    public func sample(_ context: SampleContext, into batch: inout SampleBatch) throws {
        let observation = try observe(epoch: context.epoch)
        if observation.status != lastStatus {
            switch observation.status {
            case .ok: logger?.info("wifi: sampling", metadata: ["interfaces": "\(observation.interfaces.map(\.name).joined(separator: ","))"])
            default: logger?.notice("wifi: \(observation.message ?? observation.status.rawValue); other samplers continue")
            }
            lastStatus = observation.status
        }
        guard observation.status != .noNl80211 else { return }
        // Pseudonyms of two epochs never compare: `record` restarts station baselines and new/gone counts.
        var drained: (events: [Nl80211Event], dropped: Int, lost: Bool) = ([], 0, false)
        if let events { drained = events.drain() }
        record(observation, events: drained.events, eventsDropped: drained.dropped + (drained.lost ? 1 : 0), context: context, into: &batch)
    }

    /// Turns one observation (and the events since the last one) into samples. Separate from reading so
    /// the bounding rules (top N, `others`, new/gone) are tested on observations of any size.
    func record(_ observation: WifiObservation, events: [Nl80211Event], eventsDropped: Int, context: SampleContext,
                into batch: inout SampleBatch) {
        if previousEpoch != context.epoch {
            previousStations = [:]
            stationCounters = CounterTracker(maxKeys: 4096)
            previousEpoch = context.epoch
        }
        batch.add("wifi.dumps_interrupted", [:], Double(observation.dumpsInterrupted))
        batch.add("wifi.events_dropped", [:], Double(eventsDropped))
        var eventsByInterface: [UInt32: [Nl80211Event]] = [:]
        for e in events { eventsByInterface[e.interfaceIndex ?? 0, default: []].append(e) }
        var present = Set<UInt32>()
        var presentStations = Set<String>()
        for radio in observation.interfaces {
            present.insert(radio.ifindex)
            emit(radio, events: eventsByInterface[radio.ifindex] ?? [], time: context.time, into: &batch, presentStations: &presentStations)
            maybeTriggerScan(radio, time: context.time)
        }
        stationCounters.retain(only: presentStations)
        previousStations = previousStations.filter { present.contains($0.key) }
    }

    private func emit(_ radio: WifiObservation.Radio, events: [Nl80211Event], time: SampleTime, into batch: inout SampleBatch,
                      presentStations: inout Set<String>) {
        let labels = ["interface": radio.name, "band": radio.band]
        if let f = radio.frequencyMhz { batch.add("wifi.radio.frequency", labels, Double(f)) }
        if let w = WirelessInterface.widthMHz(radio.channelWidth) { batch.add("wifi.radio.channel_width", labels, Double(w)) }
        if let p = radio.txPowerDbm { batch.add("wifi.radio.tx_power_dbm", labels, p) }
        batch.add("wifi.radio.noise_implausible", labels, radio.noisePlausible ? 0 : 1)
        if radio.noisePlausible, let n = radio.noiseDbm { batch.add("wifi.radio.noise_dbm", labels, Double(n)) }
        emitSurvey(radio, labels: labels, time: time, into: &batch)

        // Associations and disassociations from events; reason codes as a label (0: none sent).
        var associations = 0
        var reasons: [UInt16: Int] = [:]
        for e in events {
            switch e.kind {
            case .stationAdded, .connected: associations += 1
            case .stationRemoved, .disconnected: reasons[e.reasonCode ?? 0, default: 0] += 1
            }
        }
        batch.add("wifi.radio.associations", labels, Double(associations))
        for (reason, n) in reasons.sorted(by: { $0.key < $1.key }) {
            batch.add("wifi.radio.disassociations", labels.merging(["reason": String(reason)]) { a, _ in a }, Double(n))
        }

        // Stations: new/gone from dump differences, then the top N by airtime, then bytes, itemised.
        let now = Set(radio.stations.map(\.client))
        batch.add("wifi.radio.stations", labels, Double(now.count))
        if let before = previousStations[radio.ifindex] {
            batch.add("wifi.radio.stations_new", labels, Double(now.subtracting(before).count))
            batch.add("wifi.radio.stations_gone", labels, Double(before.subtracting(now).count))
        }
        previousStations[radio.ifindex] = now

        var deltas: [(station: WifiObservation.Station, delta: [UInt64]?)] = []
        for s in radio.stations {
            let key = "\(radio.ifindex)/\(s.client)"
            presentStations.insert(key)
            let counters: [UInt64] = [s.rxBytes ?? 0, s.txBytes ?? 0, UInt64(s.rxPackets ?? 0), UInt64(s.txPackets ?? 0),
                                      UInt64(s.txRetries ?? 0), UInt64(s.txFailed ?? 0), s.rxDropMisc ?? 0, UInt64(s.beaconLoss ?? 0),
                                      s.txDurationUs ?? 0, s.rxDurationUs ?? 0, UInt64(s.transmitQueues?.drops ?? 0),
                                      UInt64(s.transmitQueues?.ecnMarks ?? 0)]
            // A station that reconnected starts new counters: its connected time went backwards.
            let reading = CounterTracker<String>.Reading(generation: 0, counters: counters, monotonicNanoseconds: time.monotonicNanoseconds)
            if case .delta(let d, _) = stationCounters.update(key, reading) { deltas.append((s, d)) } else { deltas.append((s, nil)) }
        }
        let ranked = deltas.sorted { a, b in
            let airA = (a.delta?[8] ?? 0) + (a.delta?[9] ?? 0), airB = (b.delta?[8] ?? 0) + (b.delta?[9] ?? 0)
            if airA != airB { return airA > airB }
            let bytesA = (a.delta?[0] ?? 0) + (a.delta?[1] ?? 0), bytesB = (b.delta?[0] ?? 0) + (b.delta?[1] ?? 0)
            if bytesA != bytesB { return bytesA > bytesB }
            return a.station.client < b.station.client
        }
        batch.add("wifi.radio.stations_unreported", labels, Double(max(0, ranked.count - config.maxClients)))
        for (i, entry) in ranked.enumerated() {
            let peer = i < config.maxClients ? entry.station.client : PeerLabel.others
            emitStation(entry.station, delta: entry.delta, labels: labels.merging(["peer": peer]) { a, _ in a }, into: &batch)
        }

        var neighbourLabels = labels
        for n in radio.neighbours {
            guard let channel = n.channel else { continue }
            neighbourLabels["channel"] = String(channel)
            batch.add("wifi.neighbour.bss_count", neighbourLabels, Double(n.bssCount))
            for s in n.signalDbm { batch.add("wifi.neighbour.signal_dbm", neighbourLabels, s) }
        }
    }

    private func emitStation(_ s: WifiObservation.Station, delta: [UInt64]?, labels: [String: String], into batch: inout SampleBatch) {
        if let v = s.signalDbm { batch.add("wifi.station.signal_dbm", labels, Double(v)) }
        if let v = s.signalAvgDbm { batch.add("wifi.station.signal_avg_dbm", labels, Double(v)) }
        if let v = s.ackSignalDbm { batch.add("wifi.station.ack_signal_dbm", labels, Double(v)) }
        if let v = s.snrDb { batch.add("wifi.station.snr_db", labels, Double(v)) }
        if let r = s.txBitrate {
            if let b = r.bitrateKbps { batch.add("wifi.station.tx_bitrate", labels, Double(b) * 1000) }
            if let m = r.ehtMcs ?? r.heMcs ?? r.vhtMcs ?? r.mcs { batch.add("wifi.station.tx_mcs", labels, Double(m)) }
            if let n = r.nss ?? r.mcs.map({ $0 / 8 + 1 }) { batch.add("wifi.station.tx_nss", labels, Double(n)) }
            batch.add("wifi.station.tx_width", labels, Double(r.widthMhz))
            batch.add("wifi.station.tx_generation", labels, Self.generation(r.phy))
        }
        if let r = s.rxBitrate {
            if let b = r.bitrateKbps { batch.add("wifi.station.rx_bitrate", labels, Double(b) * 1000) }
            if let m = r.ehtMcs ?? r.heMcs ?? r.vhtMcs ?? r.mcs { batch.add("wifi.station.rx_mcs", labels, Double(m)) }
        }
        if let v = s.expectedThroughputKbps { batch.add("wifi.station.expected_throughput", labels, Double(v) * 1000) }
        if let v = s.inactiveMs { batch.add("wifi.station.inactive", labels, Double(v)) }
        if let v = s.connectedS { batch.add("wifi.station.connected_time", labels, Double(v)) }
        if let v = s.flags.authorized { batch.add("wifi.station.authorized", labels, v ? 1 : 0) }
        if let q = s.transmitQueues { batch.add("wifi.station.txq_backlog", labels, Double(q.backlogPackets)) }
        guard let d = delta else { return }
        let names: [(String, Bool)] = [
            ("wifi.station.rx_bytes", s.rxBytes != nil), ("wifi.station.tx_bytes", s.txBytes != nil),
            ("wifi.station.rx_packets", s.rxPackets != nil), ("wifi.station.tx_packets", s.txPackets != nil),
            ("wifi.station.tx_retries", s.txRetries != nil), ("wifi.station.tx_failed", s.txFailed != nil),
            ("wifi.station.rx_drop_misc", s.rxDropMisc != nil), ("wifi.station.beacon_loss", s.beaconLoss != nil),
            ("wifi.station.tx_airtime", s.txDurationUs != nil), ("wifi.station.rx_airtime", s.rxDurationUs != nil),
            ("wifi.station.txq_drops", s.transmitQueues != nil), ("wifi.station.txq_ecn_marks", s.transmitQueues != nil),
        ]
        for (i, (name, present)) in names.enumerated() where present {
            batch.add(name, labels, Double(d[i]))
        }
    }

    static func generation(_ phy: String) -> Double {
        switch phy {
        case "ht": 4
        case "vht": 5
        case "he": 6
        case "eht": 7
        default: 0
        }
    }

    /// Channel utilisation and airtime shares from survey deltas of the channel in use, reset-safe.
    private func emitSurvey(_ radio: WifiObservation.Radio, labels: [String: String], time: SampleTime, into batch: inout SampleBatch) {
        guard radio.surveySupported,
              let entry = radio.survey.first(where: \.inUse) ?? radio.survey.first(where: { $0.frequencyMhz == radio.frequencyMhz }),
              let active = entry.activeMs, let busy = entry.busyMs else { return }
        let key = "\(radio.ifindex)/\(entry.frequencyMhz)"
        let reading = CounterTracker<String>.Reading(
            generation: 0, counters: [active, busy, entry.rxMs ?? 0, entry.txMs ?? 0, entry.bssRxMs ?? 0],
            monotonicNanoseconds: time.monotonicNanoseconds)
        // Shares need their interval (``SampleContext/minimumRateSeconds``): the survey counts milliseconds.
        guard case .delta(let d, let seconds) = surveyCounters.update(key, reading), seconds >= SampleContext.minimumRateSeconds else { return }
        let verdict = SurveyJudgement(activeMs: d[0], busyMs: d[1], rxMs: entry.rxMs == nil ? nil : d[2],
                                      txMs: entry.txMs == nil ? nil : d[3], bssRxMs: entry.bssRxMs == nil ? nil : d[4])
        batch.add("wifi.radio.survey_implausible", labels, verdict.plausible ? 0 : 1)
        guard verdict.plausible else { return }
        let activeTime = Double(d[0])
        batch.add("wifi.radio.channel_utilisation", labels, Double(d[1]) / activeTime)
        if let tx = verdict.txMs, let bss = verdict.bssRxMs {
            batch.add("wifi.radio.own_bss_share", labels, Double(tx + bss) / activeTime)
        }
        if let rx = verdict.rxMs, let bss = verdict.bssRxMs {
            batch.add("wifi.radio.other_bss_share", labels, Double(rx >= bss ? rx - bss : 0) / activeTime)
        }
    }

    private func maybeTriggerScan(_ radio: WifiObservation.Radio, time: SampleTime) {
        guard config.triggerScans, let client else { return }
        let now = time.monotonicNanoseconds
        if let last = lastScanTrigger[radio.ifindex], now - last < UInt64(config.scanMinIntervalSeconds) * 1_000_000_000 { return }
        lastScanTrigger[radio.ifindex] = now
        do {
            try client.triggerScan(ifindex: radio.ifindex, onAccessPoint: radio.type == "ap")
        } catch {
            logger?.warning("wifi: scan not started", metadata: ["interface": "\(radio.name)", "error": "\(error)"])
        }
    }
}

/// Whether a radio's noise reading can be used for SNR. Plausible noise is measured, within a noise
/// floor's range, and not a constant the driver reports whatever the air does (mac80211_hwsim always
/// says −92 dBm; some vendor drivers send a fixed −95 or a positive number). Never replaced by an
/// assumed constant: without plausible noise there is no SNR.
public struct NoiseJudge: Sendable {
    public let constantAfter: Int
    private var last: Int?
    private var repeats = 0

    public init(constantAfter: Int) { self.constantAfter = constantAfter }

    /// Judges one reading, remembering it for the constancy check.
    public mutating func judge(_ noise: Int?) -> (plausible: Bool, problem: String?) {
        guard let noise else { return (false, "the driver reports no noise for the channel in use") }
        guard (-120 ... -50).contains(noise) else { return (false, "noise \(noise) dBm is not a noise floor (expected −120…−50 dBm)") }
        repeats = last == noise ? repeats + 1 : 1
        last = noise
        if repeats >= constantAfter {
            return (false, "noise has been exactly \(noise) dBm for \(repeats) readings: a driver constant, not a measurement")
        }
        return (true, nil)
    }
}

/// Whether one interval of survey counters is believable. Drivers disagree: some count busy time above
/// the active time, some report rx + tx beyond it (they overlap on no half-duplex radio), some send zeros.
public struct SurveyJudgement: Sendable, Equatable {
    public var activeMs: UInt64
    public var busyMs: UInt64
    public var rxMs: UInt64?
    public var txMs: UInt64?
    public var bssRxMs: UInt64?

    public init(activeMs: UInt64, busyMs: UInt64, rxMs: UInt64?, txMs: UInt64?, bssRxMs: UInt64?) {
        self.activeMs = activeMs
        self.busyMs = busyMs
        self.rxMs = rxMs
        self.txMs = txMs
        self.bssRxMs = bssRxMs
    }

    public var plausible: Bool {
        guard activeMs > 0 else { return false }  // all-zero: the radio counts nothing
        if busyMs > activeMs { return false }
        if (rxMs ?? 0) + (txMs ?? 0) > activeMs { return false }
        if let bss = bssRxMs, let rx = rxMs, bss > rx { return false }
        return true
    }
}

private func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}

extension WirelessInterface {
    static func widthMHz(_ word: String?) -> Int? {
        var w = WirelessInterface(ifindex: 0, name: "", mode: .other)
        w.channelWidth = word
        return w.channelWidthMHz
    }
}
