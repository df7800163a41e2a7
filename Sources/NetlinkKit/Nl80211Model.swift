/// What nl80211 reports, as plain Swift values. Raw MAC addresses and SSIDs appear here as bytes because
/// this is the kernel boundary: the agent pseudonymises them before anything is stored, logged or shipped.
/// Optional fields are nil when the driver did not send the attribute — never a made-up default.

/// One wireless interface (`NL80211_CMD_GET_INTERFACE`).
public struct WirelessInterface: Sendable, Equatable {
    public enum Mode: String, Sendable { case ap, station, meshPoint = "mesh_point", monitor, adhoc, other }

    public var ifindex: UInt32
    public var name: String
    public var mode: Mode
    public var wiphy: UInt32?
    public var frequencyMHz: UInt32?
    /// `NL80211_CHAN_WIDTH_*` as words: "20_noht", "20", "40", "80", "80p80", "160", "320", "5", "10", "other".
    public var channelWidth: String?
    public var centerFrequency1MHz: UInt32?
    public var centerFrequency2MHz: UInt32?
    /// `NL80211_ATTR_WIPHY_TX_POWER_LEVEL` is in mBm (1/100 dBm).
    public var txPowerMBm: Int32?
    /// Raw: pseudonymise. The AP's own BSSID for an AP interface.
    public var macAddress: [UInt8]?
    /// Raw SSID octets: pseudonymise.
    public var ssid: [UInt8]?

    public init(ifindex: UInt32, name: String, mode: Mode) {
        self.ifindex = ifindex
        self.name = name
        self.mode = mode
    }

    /// The IEEE channel number of `frequencyMHz`.
    public var channel: Int? { frequencyMHz.flatMap { Nl80211Channel.number(frequencyMHz: $0) } }
    public var channelWidthMHz: Int? {
        switch channelWidth {
        case "20_noht", "20": 20
        case "40": 40
        case "80": 80
        case "80p80", "160": 160
        case "320": 320
        case "5": 5
        case "10": 10
        default: nil
        }
    }
}

public enum Nl80211Channel {
    /// 2.4 GHz channels 1–14, 5 GHz, 6 GHz (5955 MHz = channel 1) and 60 GHz.
    public static func number(frequencyMHz f: UInt32) -> Int? {
        switch f {
        case 2484: return 14
        case 2412...2472: return Int(f - 2407) / 5
        case 5955...7115: return Int(f - 5950) / 5
        case 5935: return 2
        case 4910...4980: return Int(f - 4000) / 5
        case 5000...5925: return Int(f - 5000) / 5
        case 58320...70200: return Int(f - 56160) / 2160
        default: return nil
        }
    }

    public static func band(frequencyMHz f: UInt32) -> String {
        switch f {
        case ..<3000: "2.4"
        case 5925...7125 where f != 5925: "6"
        case 4900...5925: "5"
        case 58000...: "60"
        default: "other"
        }
    }
}

/// One `NL80211_RATE_INFO` nest: legacy, HT, VHT, HE or EHT.
public struct RateInfo: Sendable, Equatable {
    /// Bits per second (`BITRATE32`, else `BITRATE`, both in 100 kbit/s).
    public var bitsPerSecond: UInt64?
    public var mcs: UInt8?
    public var vhtMCS: UInt8?
    public var vhtNSS: UInt8?
    public var heMCS: UInt8?
    public var heNSS: UInt8?
    /// `NL80211_RATE_INFO_HE_GI_*`: 0 = 0.8 µs, 1 = 1.6 µs, 2 = 3.2 µs.
    public var heGI: UInt8?
    public var heDCM: UInt8?
    public var heRUAlloc: UInt8?
    public var ehtMCS: UInt8?
    public var ehtNSS: UInt8?
    public var ehtGI: UInt8?
    public var ehtRUAlloc: UInt8?
    public var shortGI: Bool
    public var widthMHz: Int

    public init(bitsPerSecond: UInt64? = nil, mcs: UInt8? = nil, vhtMCS: UInt8? = nil, vhtNSS: UInt8? = nil, heMCS: UInt8? = nil,
                heNSS: UInt8? = nil, heGI: UInt8? = nil, heDCM: UInt8? = nil, heRUAlloc: UInt8? = nil, ehtMCS: UInt8? = nil,
                ehtNSS: UInt8? = nil, ehtGI: UInt8? = nil, ehtRUAlloc: UInt8? = nil, shortGI: Bool = false, widthMHz: Int = 20) {
        self.bitsPerSecond = bitsPerSecond
        self.mcs = mcs
        self.vhtMCS = vhtMCS
        self.vhtNSS = vhtNSS
        self.heMCS = heMCS
        self.heNSS = heNSS
        self.heGI = heGI
        self.heDCM = heDCM
        self.heRUAlloc = heRUAlloc
        self.ehtMCS = ehtMCS
        self.ehtNSS = ehtNSS
        self.ehtGI = ehtGI
        self.ehtRUAlloc = ehtRUAlloc
        self.shortGI = shortGI
        self.widthMHz = widthMHz
    }

    /// "legacy", "ht", "vht", "he" or "eht".
    public var phy: String {
        if ehtMCS != nil { return "eht" }
        if heMCS != nil { return "he" }
        if vhtMCS != nil { return "vht" }
        if mcs != nil { return "ht" }
        return "legacy"
    }

    /// The MCS index of whichever PHY the rate used.
    public var anyMCS: UInt8? { ehtMCS ?? heMCS ?? vhtMCS ?? mcs }

    /// Spatial streams; HT encodes them in the MCS index (8 per stream).
    public var spatialStreams: UInt8? {
        if let n = ehtNSS ?? heNSS ?? vhtNSS { return n }
        if let m = mcs { return m / 8 + 1 }
        return nil
    }
}

/// Station flags from `NL80211_STA_INFO_STA_FLAGS` (a mask/set pair): nil when outside the mask.
public struct StationFlags: Sendable, Equatable {
    public var authorized: Bool?
    public var authenticated: Bool?
    public var associated: Bool?
    public var wme: Bool?
    public var mfp: Bool?
    public var shortPreamble: Bool?
    public var tdlsPeer: Bool?
    public init() {}
}

/// Transmit queue statistics of one TID (`NL80211_TID_STATS_TXQ_STATS`), summed over TIDs by the reader.
public struct TransmitQueueStats: Sendable, Equatable {
    public var backlogBytes: UInt32 = 0
    public var backlogPackets: UInt32 = 0
    public var drops: UInt32 = 0
    public var ecnMarks: UInt32 = 0
    public var overlimit: UInt32 = 0
    public var overmemory: UInt32 = 0
    public var collisions: UInt32 = 0
    public var txBytes: UInt32 = 0
    public var txPackets: UInt32 = 0
    public init() {}
}

/// One station (`NL80211_CMD_NEW_STATION` reply to a `GET_STATION` dump): every field `iw station dump`
/// prints, plus TID/TXQ statistics.
public struct StationInfo: Sendable, Equatable {
    /// Raw: pseudonymise. A client on an AP interface; the upstream AP on a station interface.
    public var macAddress: [UInt8]
    public var interfaceIndex: UInt32?
    public var inactiveMilliseconds: UInt32?
    public var connectedSeconds: UInt32?
    /// 64-bit when the kernel sends `RX_BYTES64`, else the 32-bit counter (which wraps at 4 GiB).
    public var rxBytes: UInt64?
    public var txBytes: UInt64?
    public var bytesAre64Bit = false
    public var rxPackets: UInt32?
    public var txPackets: UInt32?
    public var txRetries: UInt32?
    public var txFailed: UInt32?
    public var rxDropMisc: UInt64?
    public var beaconLoss: UInt32?
    public var beaconRx: UInt64?
    public var signalDBm: Int8?
    public var signalAverageDBm: Int8?
    public var chainSignalDBm: [Int8] = []
    public var chainSignalAverageDBm: [Int8] = []
    public var beaconSignalAverageDBm: Int8?
    public var ackSignalDBm: Int8?
    public var ackSignalAverageDBm: Int8?
    public var txRate: RateInfo?
    public var rxRate: RateInfo?
    /// kbit/s.
    public var expectedThroughputKbps: UInt32?
    /// Microseconds of airtime.
    public var txDurationMicroseconds: UInt64?
    public var rxDurationMicroseconds: UInt64?
    public var airtimeWeight: UInt16?
    public var flags = StationFlags()
    /// Present when the driver exposes per-TID TXQ statistics (mac80211 drivers with intermediate queues).
    public var transmitQueues: TransmitQueueStats?
    public var assocAtBoottimeNanoseconds: UInt64?

    public init(macAddress: [UInt8]) { self.macAddress = macAddress }
}

/// One channel of a `GET_SURVEY` dump. Times in milliseconds since the radio started counting.
public struct SurveyEntry: Sendable, Equatable {
    public var frequencyMHz: UInt32
    public var inUse: Bool
    public var noiseDBm: Int8?
    public var activeMilliseconds: UInt64?
    public var busyMilliseconds: UInt64?
    public var extBusyMilliseconds: UInt64?
    public var rxMilliseconds: UInt64?
    public var txMilliseconds: UInt64?
    public var scanMilliseconds: UInt64?
    public var bssRxMilliseconds: UInt64?

    public init(frequencyMHz: UInt32, inUse: Bool = false) {
        self.frequencyMHz = frequencyMHz
        self.inUse = inUse
    }
}

/// One BSS of the scan cache (`GET_SCAN` dump).
public struct ScannedBSS: Sendable, Equatable {
    /// Raw: pseudonymise.
    public var bssid: [UInt8]
    public var frequencyMHz: UInt32?
    /// mBm (1/100 dBm), when the driver reports signal in dBm.
    public var signalMBm: Int32?
    /// Raw SSID octets from the SSID element: pseudonymise. Empty for a hidden network.
    public var ssid: [UInt8]?
    public var seenMillisecondsAgo: UInt32?
    /// `NL80211_BSS_STATUS`: set when this interface is associated to (or joined) the BSS.
    public var isAssociated: Bool

    public init(bssid: [UInt8], isAssociated: Bool = false) {
        self.bssid = bssid
        self.isAssociated = isAssociated
    }
}

/// An nl80211 event from the `mlme` multicast group that changes who is connected.
public struct Nl80211Event: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A station associated to one of our APs (`NEW_STATION`).
        case stationAdded
        /// A station left one of our APs (`DEL_STATION`).
        case stationRemoved
        /// Our station interface connected to an upstream AP (`CONNECT`).
        case connected
        /// Our station interface lost its upstream AP (`DISCONNECT`).
        case disconnected
    }

    public var kind: Kind
    public var interfaceIndex: UInt32?
    /// IEEE 802.11 reason code when the kernel sent one (`NL80211_ATTR_REASON_CODE`).
    public var reasonCode: UInt16?
    /// `NL80211_ATTR_DISCONNECTED_BY_AP`: the far end ended it.
    public var byPeer: Bool

    public init(kind: Kind, interfaceIndex: UInt32?, reasonCode: UInt16?, byPeer: Bool) {
        self.kind = kind
        self.interfaceIndex = interfaceIndex
        self.reasonCode = reasonCode
        self.byPeer = byPeer
    }
}
