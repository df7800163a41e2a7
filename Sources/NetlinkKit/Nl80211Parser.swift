import CNetlink

/// Turns nl80211 replies into ``WirelessInterface``, ``StationInfo``, ``SurveyEntry`` and ``ScannedBSS``.
/// Pure: it takes message bytes, so recorded kernel replies (test fixtures) parse as live ones do. Every
/// optional attribute may be missing; a reply without its key attribute (ifindex, MAC, frequency) is
/// skipped, not guessed.
public enum Nl80211Parser {
    public static func interface(_ m: GenericNetlinkMessage) -> WirelessInterface? {
        let a = m.attributes
        guard let ifindex = a.u32(t(NL80211_ATTR_IFINDEX)) else { return nil }
        let mode: WirelessInterface.Mode
        switch a.u32(t(NL80211_ATTR_IFTYPE)).map({ nl80211_iftype($0) }) {
        case NL80211_IFTYPE_AP?: mode = .ap
        case NL80211_IFTYPE_STATION?, NL80211_IFTYPE_P2P_CLIENT?: mode = .station
        case NL80211_IFTYPE_MESH_POINT?: mode = .meshPoint
        case NL80211_IFTYPE_MONITOR?: mode = .monitor
        case NL80211_IFTYPE_ADHOC?: mode = .adhoc
        default: mode = .other
        }
        var w = WirelessInterface(ifindex: ifindex, name: a.string(t(NL80211_ATTR_IFNAME)) ?? "if\(ifindex)", mode: mode)
        w.wiphy = a.u32(t(NL80211_ATTR_WIPHY))
        w.frequencyMHz = a.u32(t(NL80211_ATTR_WIPHY_FREQ))
        w.channelWidth = a.u32(t(NL80211_ATTR_CHANNEL_WIDTH)).map(widthWord)
        w.centerFrequency1MHz = a.u32(t(NL80211_ATTR_CENTER_FREQ1))
        w.centerFrequency2MHz = a.u32(t(NL80211_ATTR_CENTER_FREQ2))
        w.txPowerMBm = a.s32(t(NL80211_ATTR_WIPHY_TX_POWER_LEVEL))
        w.macAddress = a.bytes(t(NL80211_ATTR_MAC)).flatMap { $0.count == 6 ? $0 : nil }
        w.ssid = a.bytes(t(NL80211_ATTR_SSID))
        return w
    }

    static func widthWord(_ raw: UInt32) -> String {
        switch nl80211_chan_width(raw) {
        case NL80211_CHAN_WIDTH_20_NOHT: "20_noht"
        case NL80211_CHAN_WIDTH_20: "20"
        case NL80211_CHAN_WIDTH_40: "40"
        case NL80211_CHAN_WIDTH_80: "80"
        case NL80211_CHAN_WIDTH_80P80: "80p80"
        case NL80211_CHAN_WIDTH_160: "160"
        case NL80211_CHAN_WIDTH_320: "320"
        case NL80211_CHAN_WIDTH_5: "5"
        case NL80211_CHAN_WIDTH_10: "10"
        default: "other"
        }
    }

    public static func station(_ m: GenericNetlinkMessage) -> StationInfo? {
        let a = m.attributes
        guard let mac = a.bytes(t(NL80211_ATTR_MAC)), mac.count == 6 else { return nil }
        var s = StationInfo(macAddress: mac)
        s.interfaceIndex = a.u32(t(NL80211_ATTR_IFINDEX))
        guard let info = a.nested(t(NL80211_ATTR_STA_INFO)) else { return s }
        s.inactiveMilliseconds = info.u32(t(NL80211_STA_INFO_INACTIVE_TIME))
        s.connectedSeconds = info.u32(t(NL80211_STA_INFO_CONNECTED_TIME))
        if let rx = info.u64(t(NL80211_STA_INFO_RX_BYTES64)), let tx = info.u64(t(NL80211_STA_INFO_TX_BYTES64)) {
            s.rxBytes = rx
            s.txBytes = tx
            s.bytesAre64Bit = true
        } else {
            s.rxBytes = info.u32(t(NL80211_STA_INFO_RX_BYTES)).map(UInt64.init)
            s.txBytes = info.u32(t(NL80211_STA_INFO_TX_BYTES)).map(UInt64.init)
        }
        s.rxPackets = info.u32(t(NL80211_STA_INFO_RX_PACKETS))
        s.txPackets = info.u32(t(NL80211_STA_INFO_TX_PACKETS))
        s.txRetries = info.u32(t(NL80211_STA_INFO_TX_RETRIES))
        s.txFailed = info.u32(t(NL80211_STA_INFO_TX_FAILED))
        s.rxDropMisc = info.u64(t(NL80211_STA_INFO_RX_DROP_MISC))
        s.beaconLoss = info.u32(t(NL80211_STA_INFO_BEACON_LOSS))
        s.beaconRx = info.u64(t(NL80211_STA_INFO_BEACON_RX))
        s.signalDBm = info.s8(t(NL80211_STA_INFO_SIGNAL))
        s.signalAverageDBm = info.s8(t(NL80211_STA_INFO_SIGNAL_AVG))
        s.chainSignalDBm = chains(info.nested(t(NL80211_STA_INFO_CHAIN_SIGNAL)))
        s.chainSignalAverageDBm = chains(info.nested(t(NL80211_STA_INFO_CHAIN_SIGNAL_AVG)))
        s.beaconSignalAverageDBm = info.s8(t(NL80211_STA_INFO_BEACON_SIGNAL_AVG))
        s.ackSignalDBm = info.s8(t(NL80211_STA_INFO_ACK_SIGNAL))
        s.ackSignalAverageDBm = info.s8(t(NL80211_STA_INFO_ACK_SIGNAL_AVG))
        s.txRate = info.nested(t(NL80211_STA_INFO_TX_BITRATE)).map(rate)
        s.rxRate = info.nested(t(NL80211_STA_INFO_RX_BITRATE)).map(rate)
        s.expectedThroughputKbps = info.u32(t(NL80211_STA_INFO_EXPECTED_THROUGHPUT))
        s.txDurationMicroseconds = info.u64(t(NL80211_STA_INFO_TX_DURATION))
        s.rxDurationMicroseconds = info.u64(t(NL80211_STA_INFO_RX_DURATION))
        s.airtimeWeight = info.u16(t(NL80211_STA_INFO_AIRTIME_WEIGHT))
        s.assocAtBoottimeNanoseconds = info.u64(t(NL80211_STA_INFO_ASSOC_AT_BOOTTIME))
        if let raw = info.bytes(t(NL80211_STA_INFO_STA_FLAGS)), raw.count >= 8 {
            let mask = raw.readU32(at: 0), set = raw.readU32(at: 4)
            func flag(_ f: nl80211_sta_flags) -> Bool? {
                let bit = UInt32(1) << f.rawValue
                return mask & bit != 0 ? set & bit != 0 : nil
            }
            s.flags.authorized = flag(NL80211_STA_FLAG_AUTHORIZED)
            s.flags.authenticated = flag(NL80211_STA_FLAG_AUTHENTICATED)
            s.flags.associated = flag(NL80211_STA_FLAG_ASSOCIATED)
            s.flags.wme = flag(NL80211_STA_FLAG_WME)
            s.flags.mfp = flag(NL80211_STA_FLAG_MFP)
            s.flags.shortPreamble = flag(NL80211_STA_FLAG_SHORT_PREAMBLE)
            s.flags.tdlsPeer = flag(NL80211_STA_FLAG_TDLS_PEER)
        }
        if let tids = info.nested(t(NL80211_STA_INFO_TID_STATS)) {
            var total = TransmitQueueStats()
            var any = false
            for (_, tidBytes) in tids.ordered {
                guard let q = NetlinkAttributes(tidBytes).nested(t(NL80211_TID_STATS_TXQ_STATS)) else { continue }
                any = true
                total.backlogBytes &+= q.u32(t(NL80211_TXQ_STATS_BACKLOG_BYTES)) ?? 0
                total.backlogPackets &+= q.u32(t(NL80211_TXQ_STATS_BACKLOG_PACKETS)) ?? 0
                total.drops &+= q.u32(t(NL80211_TXQ_STATS_DROPS)) ?? 0
                total.ecnMarks &+= q.u32(t(NL80211_TXQ_STATS_ECN_MARKS)) ?? 0
                total.overlimit &+= q.u32(t(NL80211_TXQ_STATS_OVERLIMIT)) ?? 0
                total.overmemory &+= q.u32(t(NL80211_TXQ_STATS_OVERMEMORY)) ?? 0
                total.collisions &+= q.u32(t(NL80211_TXQ_STATS_COLLISIONS)) ?? 0
                total.txBytes &+= q.u32(t(NL80211_TXQ_STATS_TX_BYTES)) ?? 0
                total.txPackets &+= q.u32(t(NL80211_TXQ_STATS_TX_PACKETS)) ?? 0
            }
            if any { s.transmitQueues = total }
        }
        return s
    }

    static func chains(_ nest: NetlinkAttributes?) -> [Int8] {
        guard let nest else { return [] }
        return nest.ordered.compactMap { $0.value.first.map { Int8(bitPattern: $0) } }
    }

    static func rate(_ r: NetlinkAttributes) -> RateInfo {
        var info = RateInfo()
        if let b32 = r.u32(t(NL80211_RATE_INFO_BITRATE32)), b32 > 0 {
            info.bitsPerSecond = UInt64(b32) * 100_000
        } else if let b16 = r.u16(t(NL80211_RATE_INFO_BITRATE)), b16 > 0 {
            info.bitsPerSecond = UInt64(b16) * 100_000
        }
        info.mcs = r.u8(t(NL80211_RATE_INFO_MCS))
        info.vhtMCS = r.u8(t(NL80211_RATE_INFO_VHT_MCS))
        info.vhtNSS = r.u8(t(NL80211_RATE_INFO_VHT_NSS))
        info.heMCS = r.u8(t(NL80211_RATE_INFO_HE_MCS))
        info.heNSS = r.u8(t(NL80211_RATE_INFO_HE_NSS))
        info.heGI = r.u8(t(NL80211_RATE_INFO_HE_GI))
        info.heDCM = r.u8(t(NL80211_RATE_INFO_HE_DCM))
        info.heRUAlloc = r.u8(t(NL80211_RATE_INFO_HE_RU_ALLOC))
        info.ehtMCS = r.u8(t(NL80211_RATE_INFO_EHT_MCS))
        info.ehtNSS = r.u8(t(NL80211_RATE_INFO_EHT_NSS))
        info.ehtGI = r.u8(t(NL80211_RATE_INFO_EHT_GI))
        info.ehtRUAlloc = r.u8(t(NL80211_RATE_INFO_EHT_RU_ALLOC))
        info.shortGI = r.has(t(NL80211_RATE_INFO_SHORT_GI))
        if r.has(t(NL80211_RATE_INFO_320_MHZ_WIDTH)) { info.widthMHz = 320 }
        else if r.has(t(NL80211_RATE_INFO_160_MHZ_WIDTH)) || r.has(t(NL80211_RATE_INFO_80P80_MHZ_WIDTH)) { info.widthMHz = 160 }
        else if r.has(t(NL80211_RATE_INFO_80_MHZ_WIDTH)) { info.widthMHz = 80 }
        else if r.has(t(NL80211_RATE_INFO_40_MHZ_WIDTH)) { info.widthMHz = 40 }
        else if r.has(t(NL80211_RATE_INFO_10_MHZ_WIDTH)) { info.widthMHz = 10 }
        else if r.has(t(NL80211_RATE_INFO_5_MHZ_WIDTH)) { info.widthMHz = 5 }
        return info
    }

    public static func survey(_ m: GenericNetlinkMessage) -> SurveyEntry? {
        guard let s = m.attributes.nested(t(NL80211_ATTR_SURVEY_INFO)),
              let frequency = s.u32(t(NL80211_SURVEY_INFO_FREQUENCY)) else { return nil }
        var e = SurveyEntry(frequencyMHz: frequency, inUse: s.has(t(NL80211_SURVEY_INFO_IN_USE)))
        e.noiseDBm = s.s8(t(NL80211_SURVEY_INFO_NOISE))
        e.activeMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME))
        e.busyMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_BUSY))
        e.extBusyMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_EXT_BUSY))
        e.rxMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_RX))
        e.txMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_TX))
        e.scanMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_SCAN))
        e.bssRxMilliseconds = s.u64(t(NL80211_SURVEY_INFO_TIME_BSS_RX))
        return e
    }

    public static func bss(_ m: GenericNetlinkMessage) -> ScannedBSS? {
        guard let b = m.attributes.nested(t(NL80211_ATTR_BSS)),
              let bssid = b.bytes(t(NL80211_BSS_BSSID)), bssid.count == 6 else { return nil }
        var s = ScannedBSS(bssid: bssid, isAssociated: b.has(t(NL80211_BSS_STATUS)))
        s.frequencyMHz = b.u32(t(NL80211_BSS_FREQUENCY))
        s.signalMBm = b.s32(t(NL80211_BSS_SIGNAL_MBM))
        s.seenMillisecondsAgo = b.u32(t(NL80211_BSS_SEEN_MS_AGO))
        // The SSID element (id 0) of the probe response or beacon: a management-frame field, not payload.
        if let ies = b.bytes(t(NL80211_BSS_INFORMATION_ELEMENTS)) ?? b.bytes(t(NL80211_BSS_BEACON_IES)) {
            s.ssid = informationElement(0, in: ies)
        }
        return s
    }

    /// The body of the first element with `id`, walking the element list without reading past its end.
    static func informationElement(_ id: UInt8, in ies: [UInt8]) -> [UInt8]? {
        var i = 0
        while i + 2 <= ies.count {
            let length = Int(ies[i + 1])
            guard i + 2 + length <= ies.count else { return nil }
            if ies[i] == id { return Array(ies[(i + 2)..<(i + 2 + length)]) }
            i += 2 + length
        }
        return nil
    }

    public static func regulatoryCountry(_ m: GenericNetlinkMessage) -> String? {
        m.attributes.string(t(NL80211_ATTR_REG_ALPHA2))
    }

    /// The connection-changing events of the `mlme` group; other commands give nil.
    public static func event(_ m: GenericNetlinkMessage) -> Nl80211Event? {
        let a = m.attributes
        let kind: Nl80211Event.Kind
        switch nl80211_commands(UInt32(m.command)) {
        case NL80211_CMD_NEW_STATION: kind = .stationAdded
        case NL80211_CMD_DEL_STATION: kind = .stationRemoved
        case NL80211_CMD_CONNECT:
            // A failed connect attempt carries a non-zero status code: not a connection.
            if let status = a.u16(t(NL80211_ATTR_STATUS_CODE)), status != 0 { return nil }
            kind = .connected
        // DEAUTHENTICATE/DISASSOCIATE precede the DISCONNECT of the same loss; counting DISCONNECT alone
        // counts each loss once, and it carries the reason code.
        case NL80211_CMD_DISCONNECT: kind = .disconnected
        default: return nil
        }
        return Nl80211Event(kind: kind, interfaceIndex: a.u32(t(NL80211_ATTR_IFINDEX)), reasonCode: a.u16(t(NL80211_ATTR_REASON_CODE)),
                            byPeer: a.has(t(NL80211_ATTR_DISCONNECTED_BY_AP)))
    }

    @inline(__always)
    static func t<T: RawRepresentable>(_ v: T) -> UInt16 where T.RawValue == UInt32 { UInt16(v.rawValue) }
}
