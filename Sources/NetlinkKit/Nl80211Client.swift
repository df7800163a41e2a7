import CNetlink

/// Reads radios, stations, surveys and the scan cache through nl80211 (libnl-genl). Sockets live in the
/// network namespace of the thread that opened them.
public final class Nl80211Client {
    private let genl: GenericNetlinkSocket

    /// Nil when this kernel has no nl80211 family (cfg80211 not loaded: no Wi-Fi on this host).
    public static func open() throws(NetlinkError) -> Nl80211Client? {
        guard let genl = try GenericNetlinkSocket(family: "nl80211") else { return nil }
        return Nl80211Client(genl: genl)
    }

    private init(genl: GenericNetlinkSocket) { self.genl = genl }

    /// Dumps the kernel flagged as interrupted and retried, since the client was opened.
    public var interruptedDumps: Int { genl.interruptedDumps }

    public func interfaces() throws(NetlinkError) -> [WirelessInterface] {
        Self.interfaces(try genl.dump(command: cmd(NL80211_CMD_GET_INTERFACE)))
    }

    /// The stations of one interface. An interface that vanished between listing and dumping gives an
    /// empty list; a station that left mid-dump is simply absent, and one listed twice (the kernel's
    /// index shifted under the dump) is kept once.
    public func stations(ifindex: UInt32) throws(NetlinkError) -> StationDump {
        Self.stations(try genl.dump(command: cmd(NL80211_CMD_GET_STATION), ifindex: ifindex, limit: 2048))
    }

    /// The channel survey, or nil when the driver has no survey support.
    public func survey(ifindex: UInt32) throws(NetlinkError) -> [SurveyEntry]? {
        Self.survey(try genl.dump(command: cmd(NL80211_CMD_GET_SURVEY), ifindex: ifindex, limit: 512))
    }

    /// The cached scan results of one interface (never triggers a scan).
    public func scanResults(ifindex: UInt32) throws(NetlinkError) -> [ScannedBSS] {
        Self.scanResults(try genl.dump(command: cmd(NL80211_CMD_GET_SCAN), ifindex: ifindex, limit: 1024))
    }

    // Pure interpretations of a dump reply: the live path and the fixture tests share them.

    public static func interfaces(_ reply: DumpReply) -> [WirelessInterface] {
        reply.messages.compactMap(Nl80211Parser.interface)
    }

    public static func stations(_ reply: DumpReply) -> StationDump {
        StationDump(stations: deduplicated(reply.messages.compactMap(Nl80211Parser.station)),
                    interrupted: reply.interrupted, truncated: reply.truncated)
    }

    public static func survey(_ reply: DumpReply) -> [SurveyEntry]? {
        reply.failure == .notSupported ? nil : reply.messages.compactMap(Nl80211Parser.survey)
    }

    public static func scanResults(_ reply: DumpReply) -> [ScannedBSS] {
        reply.messages.compactMap(Nl80211Parser.bss)
    }

    static func deduplicated(_ stations: [StationInfo]) -> [StationInfo] {
        var seen: [[UInt8]: Int] = [:]
        var result: [StationInfo] = []
        for s in stations {
            if let i = seen[s.macAddress] { result[i] = s } else {
                seen[s.macAddress] = result.count
                result.append(s)
            }
        }
        return result
    }

    /// Asks the driver to scan. On an AP interface the `AP` scan flag is needed, and clients may notice
    /// the off-channel time: callers rate-limit this.
    public func triggerScan(ifindex: UInt32, onAccessPoint: Bool) throws(NetlinkError) {
        let flags: [(UInt16, UInt32)] = onAccessPoint
            ? [(UInt16(NL80211_ATTR_SCAN_FLAGS.rawValue), NL80211_SCAN_FLAG_AP.rawValue)] : []
        try genl.command(cmd(NL80211_CMD_TRIGGER_SCAN), ifindex: ifindex, u32Attributes: flags)
    }

    /// The global regulatory domain's country ("00" is the world domain).
    public func regulatoryCountry() throws(NetlinkError) -> String? {
        try genl.request(command: cmd(NL80211_CMD_GET_REG)).lazy.compactMap(Nl80211Parser.regulatoryCountry).first
    }

    private func cmd(_ c: nl80211_commands) -> UInt8 { UInt8(c.rawValue) }
}

public struct StationDump: Sendable {
    public var stations: [StationInfo]
    /// The kernel flagged every attempt as inconsistent; the list may miss or repeat a station.
    public var interrupted: Bool
    /// More stations than the reader keeps (2048).
    public var truncated: Bool
}

/// Association and disassociation events from nl80211's `mlme` multicast group, read without blocking.
public final class Nl80211EventMonitor {
    private let listener: GenericNetlinkListener

    /// Nil when nl80211 or its `mlme` group is missing.
    public static func open() throws(NetlinkError) -> Nl80211EventMonitor? {
        let commands: Set<UInt8> = [NL80211_CMD_NEW_STATION, NL80211_CMD_DEL_STATION, NL80211_CMD_CONNECT, NL80211_CMD_DISCONNECT]
            .reduce(into: []) { $0.insert(UInt8($1.rawValue)) }
        guard let l = try GenericNetlinkListener(family: "nl80211", group: "mlme", commands: commands) else { return nil }
        return Nl80211EventMonitor(listener: l)
    }

    private init(listener: GenericNetlinkListener) { self.listener = listener }

    /// Events since the last call: at most `limit` kept, the rest counted in `dropped`; `lost` when the
    /// kernel overran the socket buffer.
    public func drain(limit: Int = 1024) -> (events: [Nl80211Event], dropped: Int, lost: Bool) {
        let r = listener.drain(limit: limit)
        return (r.messages.compactMap(Nl80211Parser.event), r.dropped, r.lost)
    }
}
