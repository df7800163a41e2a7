import NetlinkKit
import Pseudonymisation

/// What the Wi-Fi sampler sees at one instant, with every MAC address and SSID already pseudonymised.
/// `sample --once --json` prints it (snake_case keys); absent fields mean the kernel did not send them.
public struct WifiObservation: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        case ok
        /// cfg80211 is not loaded: this host has no Wi-Fi at all.
        case noNl80211 = "no_nl80211"
        /// nl80211 exists but no wireless interface matches the configuration.
        case noWirelessInterfaces = "no_wireless_interfaces"
    }

    public var status: Status
    public var message: String?
    public var regulatoryCountry: String?
    public var interfaces: [Radio] = []
    /// Dumps flagged `NLM_F_DUMP_INTR` and retried during this observation.
    public var dumpsInterrupted = 0

    public struct Radio: Codable, Sendable {
        public var ifindex: UInt32
        public var name: String
        public var type: String
        public var band: String
        public var wiphy: UInt32?
        public var frequencyMhz: UInt32?
        public var channel: Int?
        public var channelWidth: String?
        public var centerFreq1Mhz: UInt32?
        public var centerFreq2Mhz: UInt32?
        public var txPowerDbm: Double?
        public var ssid: String?
        public var bssid: String?
        /// Noise of the channel in use, as measured (nil when the survey has none).
        public var noiseDbm: Int?
        public var noisePlausible: Bool
        /// Why the noise is not used for SNR, when it is not.
        public var noiseProblem: String?
        public var surveySupported: Bool
        public var survey: [SurveyChannel] = []
        public var stations: [Station] = []
        public var stationDumpInterrupted: Bool = false
        public var neighbours: [NeighbourChannel] = []
    }

    public struct SurveyChannel: Codable, Sendable {
        public var frequencyMhz: UInt32
        public var inUse: Bool
        public var noiseDbm: Int?
        public var activeMs: UInt64?
        public var busyMs: UInt64?
        public var extBusyMs: UInt64?
        public var rxMs: UInt64?
        public var txMs: UInt64?
        public var bssRxMs: UInt64?
        public var scanMs: UInt64?
    }

    public struct Rate: Codable, Sendable {
        public var bitrateKbps: UInt64?
        public var phy: String
        public var mcs: UInt8?
        public var vhtMcs: UInt8?
        public var heMcs: UInt8?
        public var ehtMcs: UInt8?
        public var nss: UInt8?
        public var widthMhz: Int
        public var shortGi: Bool
        public var heGi: UInt8?
        public var heDcm: UInt8?
        public var heRuAlloc: UInt8?
        public var ehtGi: UInt8?
        public var ehtRuAlloc: UInt8?

        init(_ r: RateInfo) {
            bitrateKbps = r.bitsPerSecond.map { $0 / 1000 }
            phy = r.phy
            mcs = r.mcs
            vhtMcs = r.vhtMCS
            heMcs = r.heMCS
            ehtMcs = r.ehtMCS
            nss = r.ehtNSS ?? r.heNSS ?? r.vhtNSS
            widthMhz = r.widthMHz
            shortGi = r.shortGI
            heGi = r.heGI
            heDcm = r.heDCM
            heRuAlloc = r.heRUAlloc
            ehtGi = r.ehtGI
            ehtRuAlloc = r.ehtRUAlloc
        }
    }

    public struct Flags: Codable, Sendable {
        public var authorized: Bool?
        public var authenticated: Bool?
        public var associated: Bool?
        public var wme: Bool?
        public var mfp: Bool?
        public var shortPreamble: Bool?
        public var tdlsPeer: Bool?
    }

    public struct TransmitQueues: Codable, Sendable {
        public var backlogBytes: UInt32
        public var backlogPackets: UInt32
        public var drops: UInt32
        public var ecnMarks: UInt32
    }

    public struct Station: Codable, Sendable {
        /// `cm_…` for a client of an AP interface, `bs_…` for the upstream AP of a station interface.
        public var client: String
        public var inactiveMs: UInt32?
        public var connectedS: UInt32?
        public var rxBytes: UInt64?
        public var txBytes: UInt64?
        public var bytes64Bit: Bool
        public var rxPackets: UInt32?
        public var txPackets: UInt32?
        public var txRetries: UInt32?
        public var txFailed: UInt32?
        public var rxDropMisc: UInt64?
        public var beaconLoss: UInt32?
        public var beaconRx: UInt64?
        public var signalDbm: Int?
        public var signalAvgDbm: Int?
        public var chainSignalDbm: [Int]
        public var chainSignalAvgDbm: [Int]
        public var beaconSignalAvgDbm: Int?
        public var ackSignalDbm: Int?
        public var ackSignalAvgDbm: Int?
        public var txBitrate: Rate?
        public var rxBitrate: Rate?
        public var expectedThroughputKbps: UInt32?
        public var txDurationUs: UInt64?
        public var rxDurationUs: UInt64?
        public var airtimeWeight: UInt16?
        public var flags: Flags
        public var transmitQueues: TransmitQueues?
        /// Signal minus the measured noise of the channel in use; absent when that noise is implausible.
        public var snrDb: Int?
    }

    public struct NeighbourChannel: Codable, Sendable {
        public var frequencyMhz: UInt32
        public var channel: Int?
        public var bssCount: Int
        public var signalDbm: [Double]
        public var bsses: [NeighbourBSS]
    }

    public struct NeighbourBSS: Codable, Sendable {
        public var bssid: String
        /// Absent for a hidden network.
        public var ssid: String?
        public var signalDbm: Double?
    }
}

extension WifiObservation.Station {
    init(_ s: StationInfo, peer: String, snr: Int?) {
        client = peer
        inactiveMs = s.inactiveMilliseconds
        connectedS = s.connectedSeconds
        rxBytes = s.rxBytes
        txBytes = s.txBytes
        bytes64Bit = s.bytesAre64Bit
        rxPackets = s.rxPackets
        txPackets = s.txPackets
        txRetries = s.txRetries
        txFailed = s.txFailed
        rxDropMisc = s.rxDropMisc
        beaconLoss = s.beaconLoss
        beaconRx = s.beaconRx
        signalDbm = s.signalDBm.map(Int.init)
        signalAvgDbm = s.signalAverageDBm.map(Int.init)
        chainSignalDbm = s.chainSignalDBm.map(Int.init)
        chainSignalAvgDbm = s.chainSignalAverageDBm.map(Int.init)
        beaconSignalAvgDbm = s.beaconSignalAverageDBm.map(Int.init)
        ackSignalDbm = s.ackSignalDBm.map(Int.init)
        ackSignalAvgDbm = s.ackSignalAverageDBm.map(Int.init)
        txBitrate = s.txRate.map(WifiObservation.Rate.init)
        rxBitrate = s.rxRate.map(WifiObservation.Rate.init)
        expectedThroughputKbps = s.expectedThroughputKbps
        txDurationUs = s.txDurationMicroseconds
        rxDurationUs = s.rxDurationMicroseconds
        airtimeWeight = s.airtimeWeight
        flags = .init(authorized: s.flags.authorized, authenticated: s.flags.authenticated, associated: s.flags.associated,
                      wme: s.flags.wme, mfp: s.flags.mfp, shortPreamble: s.flags.shortPreamble, tdlsPeer: s.flags.tdlsPeer)
        transmitQueues = s.transmitQueues.map {
            .init(backlogBytes: $0.backlogBytes, backlogPackets: $0.backlogPackets, drops: $0.drops, ecnMarks: $0.ecnMarks)
        }
        snrDb = snr
    }
}

extension WifiObservation.SurveyChannel {
    init(_ e: SurveyEntry) {
        frequencyMhz = e.frequencyMHz
        inUse = e.inUse
        noiseDbm = e.noiseDBm.map(Int.init)
        activeMs = e.activeMilliseconds
        busyMs = e.busyMilliseconds
        extBusyMs = e.extBusyMilliseconds
        rxMs = e.rxMilliseconds
        txMs = e.txMilliseconds
        bssRxMs = e.bssRxMilliseconds
        scanMs = e.scanMilliseconds
    }
}
