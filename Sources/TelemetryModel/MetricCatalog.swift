/// A retention class. Every metric belongs to exactly one; retention is configured per class.
public struct DataClass: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Interface counters, speed, state: infrastructure health, no personal data.
    public static let link = DataClass(rawValue: "link")
    /// LAN client presence by pseudonym: personal data, kept shortest among the telemetry classes.
    public static let clients = DataClass(rawValue: "clients")
    /// Radio and per-station quality (nl80211).
    public static let wifi = DataClass(rawValue: "wifi")
    /// Packet-header derived performance: traffic data under telecom secrecy (capture).
    public static let traffic = DataClass(rawValue: "traffic")
    /// Data from on-demand troubleshooting sessions: every series of a report that carries
    /// `troubleshooting_session`, whatever its metric's own class.
    public static let troubleshooting = DataClass(rawValue: "troubleshooting")
    /// The collector's own audit trail of operator access.
    public static let audit = DataClass(rawValue: "audit")
    /// Fleet aggregates merged at ingest across devices: no device, no client, only fixed-set labels.
    public static let fleet = DataClass(rawValue: "fleet")

    /// The classes every retention policy must define.
    public static let required: [DataClass] = [.link, .clients, .wifi, .traffic, .troubleshooting, .audit, .fleet]

    public var description: String { rawValue }
    public static func < (a: DataClass, b: DataClass) -> Bool { a.rawValue < b.rawValue }
}

/// What a label's value may look like. The collector rejects anything else.
public enum LabelValueRule: Sendable, Equatable {
    /// A Linux interface name: 1–15 bytes of letters, digits, `.`, `-`, `_`, `@`.
    case interfaceName
    /// A pseudonym of the given kind (see `Pseudonymisation`): `<tag>_` + 24 base32 characters.
    case pseudonym(tag: String)
    /// One of a fixed set of words.
    case oneOf([String])
    /// An IEEE OUI written `AA-BB-CC`: the vendor part of a globally administered MAC, never the rest.
    case oui
    /// The far end of a Wi-Fi link: a pseudonym of one of the given kinds, or `others` (clients beyond the
    /// itemised top N, folded into one series).
    case peer([String])
    /// A decimal integer in the range, without leading zeros (channel numbers, reason codes).
    case integer(ClosedRange<Int>)
    /// A short machine word: 1–24 of letters, digits, `.`, `-`, `_` (thermal zone types).
    case token
}

/// The `peer` label's one value that is not a pseudonym.
public enum PeerLabel {
    /// The clients past a sense's itemised top N in an interval (`capture.max_clients`, `wifi.max_clients`),
    /// folded into one series.
    public static let others = "others"
}

/// How a series' samples relate to the source.
public enum MetricKind: String, Sendable {
    /// Each sample is a counter delta over one sampling interval; `sum` is the window total.
    case counterDelta = "counter_delta"
    /// Each sample is an instantaneous reading.
    case gauge
    /// Each sample is a rate over one sampling interval; shipped with a quantile sketch.
    case rate
    /// Each sample is an instantaneous reading whose spread matters (signal, SNR, bitrate, utilisation);
    /// shipped with a quantile sketch, which holds negative values from schema 2 on.
    case distribution

    /// Whether series of this kind carry a quantile sketch.
    public var isSketched: Bool { self == .rate || self == .distribution }
}

public struct MetricDescriptor: Sendable {
    public let name: String
    public let unit: String
    public let kind: MetricKind
    public let dataClass: DataClass
    /// Required labels and their rules; a series must carry exactly these keys.
    public let labels: [String: LabelValueRule]
    /// Where the value comes from (kernel attribute, computation), for docs/metrics.md.
    public let source: String
}

/// The single list of metrics Meetpunt ships. `docs/metrics.md` mirrors it and a test keeps the two equal.
public enum MetricCatalog {
    static let interface: [String: LabelValueRule] = ["interface": .interfaceName]
    static let clientLabels: [String: LabelValueRule] = [
        "interface": .interfaceName,
        "client": .pseudonym(tag: "cm"),
        "mac_kind": .oneOf(["global", "local"]),
        "oui": .oui,
    ]

    static let radio: [String: LabelValueRule] = ["interface": .interfaceName, "band": .oneOf(["2.4", "5", "6", "60", "other"])]
    static let station: [String: LabelValueRule] = radio.merging(["peer": .peer(["cm", "bs"])]) { a, _ in a }
    static let neighbourChannel: [String: LabelValueRule] = radio.merging(["channel": .integer(1...233)]) { a, _ in a }
    static let reason: [String: LabelValueRule] = radio.merging(["reason": .integer(0...65535)]) { a, _ in a }

    static func wifi(_ name: String, _ unit: String, _ kind: MetricKind, _ labels: [String: LabelValueRule], _ source: String) -> MetricDescriptor {
        MetricDescriptor(name: name, unit: unit, kind: kind, dataClass: .wifi, labels: labels, source: source)
    }

    static func system(_ name: String, _ unit: String, _ kind: MetricKind, _ source: String, labels: [String: LabelValueRule] = [:]) -> MetricDescriptor {
        MetricDescriptor(name: name, unit: unit, kind: kind, dataClass: .link, labels: labels, source: source)
    }

    public static let all: [MetricDescriptor] = base + wifiMetrics + systemMetrics + trafficMetrics

    static let trafficClass: [String: LabelValueRule] = [
        "direction": .oneOf(["upstream", "downstream", "lan", "wan"]),
        "transport": .oneOf(["tcp", "udp", "icmp", "other"]),
        "ip": .oneOf(["4", "6"]),
    ]
    static let trafficDirection: [String: LabelValueRule] = ["direction": .oneOf(["upstream", "downstream", "lan", "wan"])]
    static let rttLabels: [String: LabelValueRule] = ["leg": .oneOf(["lan", "wan"]), "method": .oneOf(["handshake", "timestamps", "seqack"])]
    static let trafficClient: [String: LabelValueRule] = ["peer": .peer(["cm"]), "direction": .oneOf(["upstream", "downstream", "lan"])]

    static func traffic(_ name: String, _ unit: String, _ kind: MetricKind, _ labels: [String: LabelValueRule], _ source: String) -> MetricDescriptor {
        MetricDescriptor(name: name, unit: unit, kind: kind, dataClass: .traffic, labels: labels, source: source)
    }

    static let trafficMetrics: [MetricDescriptor] = [
        traffic("traffic.packets", "packets", .counterDelta, trafficClass, "libpcap, headers only: packets by direction (LAN/WAN by address), transport and IP version"),
        traffic("traffic.bytes", "bytes", .counterDelta, trafficClass, "libpcap: original (wire) length of those packets"),
        traffic("traffic.flows_active", "flows", .gauge, [:], "agent: conversations in the flow table (bounded by capture.max_flows)"),
        traffic("traffic.flows_new", "flows", .counterDelta, [:], "agent: conversations first seen in the interval"),
        traffic("traffic.flows_evicted", "flows", .counterDelta, [:], "agent: conversations evicted from the full flow table"),
        traffic("traffic.tcp.rtt", "milliseconds", .distribution, rttLabels, "TCP handshake (SYN→SYN/ACK, SYN/ACK→ACK), TSval/TSecr echo, or SEQ/ACK under Karn's rule; by leg seen from the router"),
        traffic("traffic.tcp.retransmissions", "segments", .counterDelta, trafficDirection, "TCP segments below the next expected sequence number, not keep-alives, not out of order (fast retransmissions included)"),
        traffic("traffic.tcp.fast_retransmissions", "segments", .counterDelta, trafficDirection, "retransmissions within 20 ms of two duplicate ACKs for that sequence number"),
        traffic("traffic.tcp.out_of_order", "segments", .counterDelta, trafficDirection, "TCP segments below the next expected sequence number within 3 ms of the highest one"),
        traffic("traffic.tcp.zero_window", "segments", .counterDelta, trafficDirection, "TCP segments advertising a zero receive window (not SYN/FIN/RST)"),
        traffic("traffic.client.bytes", "bytes", .counterDelta, trafficClient, "libpcap: bytes per LAN client (pseudonymised Ethernet address), top capture.max_clients then others"),
        traffic("traffic.client.packets", "packets", .counterDelta, ["peer": .peer(["cm"])], "libpcap: packets per LAN client, both directions"),
        traffic("traffic.client.rtt", "milliseconds", .distribution, ["peer": .peer(["cm"]), "leg": .oneOf(["lan", "wan"])], "TCP RTT samples of the client's conversations"),
        traffic("traffic.clients_unreported", "clients", .gauge, [:], "agent: clients beyond capture.max_clients, folded into peer=others"),
        traffic("traffic.skipped_packets", "packets", .counterDelta, ["reason": .oneOf(["unsupported_link_type", "not_ip", "truncated_header", "malformed_header", "headers_too_long"])], "agent: packets counted but not analysed, by reason"),
        traffic("traffic.rtt_samples_dropped", "samples", .counterDelta, [:], "agent: RTT samples beyond 4096 per interval"),
        traffic("traffic.capture_drops", "packets", .counterDelta, [:], "libpcap pcap_stats ps_drop: packets the kernel dropped before the agent read them"),
    ]

    static let wifiMetrics: [MetricDescriptor] = [
        wifi("wifi.radio.frequency", "megahertz", .gauge, radio, "nl80211 GET_INTERFACE NL80211_ATTR_WIPHY_FREQ"),
        wifi("wifi.radio.channel_width", "megahertz", .gauge, radio, "nl80211 GET_INTERFACE NL80211_ATTR_CHANNEL_WIDTH (80+80 counts as 160)"),
        wifi("wifi.radio.tx_power_dbm", "dbm", .gauge, radio, "nl80211 GET_INTERFACE NL80211_ATTR_WIPHY_TX_POWER_LEVEL / 100"),
        wifi("wifi.radio.noise_dbm", "dbm", .distribution, radio, "nl80211 GET_SURVEY NL80211_SURVEY_INFO_NOISE of the channel in use; only when plausible"),
        wifi("wifi.radio.noise_implausible", "boolean", .gauge, radio, "agent: noise missing, outside -120…-50 dBm, or identical for wifi.noise_constant_samples readings"),
        wifi("wifi.radio.channel_utilisation", "ratio", .distribution, radio, "Δ SURVEY_INFO_TIME_BUSY / Δ SURVEY_INFO_TIME of the channel in use"),
        wifi("wifi.radio.own_bss_share", "ratio", .distribution, radio, "(Δ SURVEY_INFO_TIME_TX + Δ SURVEY_INFO_TIME_BSS_RX) / Δ SURVEY_INFO_TIME"),
        wifi("wifi.radio.other_bss_share", "ratio", .distribution, radio, "(Δ SURVEY_INFO_TIME_RX − Δ SURVEY_INFO_TIME_BSS_RX) / Δ SURVEY_INFO_TIME: airtime heard from other networks"),
        wifi("wifi.radio.survey_implausible", "boolean", .gauge, radio, "agent: survey deltas with busy or rx+tx above active time, or all zero"),
        wifi("wifi.radio.stations", "stations", .gauge, radio, "nl80211 GET_STATION dump: entries"),
        wifi("wifi.radio.stations_new", "stations", .counterDelta, radio, "agent: stations in this dump and not the one before"),
        wifi("wifi.radio.stations_gone", "stations", .counterDelta, radio, "agent: stations in the dump before and not this one"),
        wifi("wifi.radio.stations_unreported", "stations", .gauge, radio, "agent: stations beyond wifi.max_clients, folded into peer=others"),
        wifi("wifi.radio.associations", "events", .counterDelta, radio, "nl80211 mlme events NL80211_CMD_NEW_STATION (AP) and NL80211_CMD_CONNECT (station)"),
        wifi("wifi.radio.disassociations", "events", .counterDelta, reason, "nl80211 mlme events NL80211_CMD_DEL_STATION (AP) and NL80211_CMD_DISCONNECT (station) by NL80211_ATTR_REASON_CODE; 0 when none was sent"),
        wifi("wifi.station.signal_dbm", "dbm", .distribution, station, "nl80211 STA_INFO_SIGNAL"),
        wifi("wifi.station.signal_avg_dbm", "dbm", .gauge, station, "nl80211 STA_INFO_SIGNAL_AVG"),
        wifi("wifi.station.ack_signal_dbm", "dbm", .distribution, station, "nl80211 STA_INFO_ACK_SIGNAL (when the driver reports it)"),
        wifi("wifi.station.snr_db", "decibels", .distribution, station, "STA_INFO_SIGNAL − SURVEY_INFO_NOISE of the channel in use; absent when the noise is implausible"),
        wifi("wifi.station.tx_bitrate", "bits_per_second", .distribution, station, "nl80211 STA_INFO_TX_BITRATE RATE_INFO_BITRATE32 × 100 kbit/s"),
        wifi("wifi.station.rx_bitrate", "bits_per_second", .distribution, station, "nl80211 STA_INFO_RX_BITRATE RATE_INFO_BITRATE32 × 100 kbit/s"),
        wifi("wifi.station.tx_mcs", "index", .gauge, station, "RATE_INFO_MCS / VHT_MCS / HE_MCS / EHT_MCS of STA_INFO_TX_BITRATE"),
        wifi("wifi.station.rx_mcs", "index", .gauge, station, "RATE_INFO_MCS / VHT_MCS / HE_MCS / EHT_MCS of STA_INFO_RX_BITRATE"),
        wifi("wifi.station.tx_nss", "streams", .gauge, station, "RATE_INFO_VHT_NSS / HE_NSS / EHT_NSS (HT: MCS / 8 + 1) of STA_INFO_TX_BITRATE"),
        wifi("wifi.station.tx_width", "megahertz", .gauge, station, "RATE_INFO_40/80/160/320_MHZ_WIDTH of STA_INFO_TX_BITRATE (20 when none)"),
        wifi("wifi.station.tx_generation", "generation", .gauge, station, "Wi-Fi generation of the tx rate: 0 legacy, 4 HT, 5 VHT, 6 HE, 7 EHT"),
        wifi("wifi.station.expected_throughput", "bits_per_second", .gauge, station, "nl80211 STA_INFO_EXPECTED_THROUGHPUT × 1000"),
        wifi("wifi.station.rx_bytes", "bytes", .counterDelta, station, "nl80211 STA_INFO_RX_BYTES64 (RX_BYTES, 32-bit, when absent)"),
        wifi("wifi.station.tx_bytes", "bytes", .counterDelta, station, "nl80211 STA_INFO_TX_BYTES64 (TX_BYTES, 32-bit, when absent)"),
        wifi("wifi.station.rx_packets", "packets", .counterDelta, station, "nl80211 STA_INFO_RX_PACKETS"),
        wifi("wifi.station.tx_packets", "packets", .counterDelta, station, "nl80211 STA_INFO_TX_PACKETS"),
        wifi("wifi.station.tx_retries", "packets", .counterDelta, station, "nl80211 STA_INFO_TX_RETRIES"),
        wifi("wifi.station.tx_failed", "packets", .counterDelta, station, "nl80211 STA_INFO_TX_FAILED"),
        wifi("wifi.station.rx_drop_misc", "packets", .counterDelta, station, "nl80211 STA_INFO_RX_DROP_MISC"),
        wifi("wifi.station.beacon_loss", "events", .counterDelta, station, "nl80211 STA_INFO_BEACON_LOSS (station-mode uplinks)"),
        wifi("wifi.station.tx_airtime", "microseconds", .counterDelta, station, "nl80211 STA_INFO_TX_DURATION"),
        wifi("wifi.station.rx_airtime", "microseconds", .counterDelta, station, "nl80211 STA_INFO_RX_DURATION"),
        wifi("wifi.station.inactive", "milliseconds", .gauge, station, "nl80211 STA_INFO_INACTIVE_TIME"),
        wifi("wifi.station.connected_time", "seconds", .gauge, station, "nl80211 STA_INFO_CONNECTED_TIME"),
        wifi("wifi.station.authorized", "boolean", .gauge, station, "nl80211 STA_INFO_STA_FLAGS NL80211_STA_FLAG_AUTHORIZED"),
        wifi("wifi.station.txq_backlog", "packets", .gauge, station, "nl80211 STA_INFO_TID_STATS TXQ_STATS_BACKLOG_PACKETS, summed over TIDs"),
        wifi("wifi.station.txq_drops", "packets", .counterDelta, station, "nl80211 STA_INFO_TID_STATS TXQ_STATS_DROPS, summed over TIDs"),
        wifi("wifi.station.txq_ecn_marks", "packets", .counterDelta, station, "nl80211 STA_INFO_TID_STATS TXQ_STATS_ECN_MARKS, summed over TIDs"),
        wifi("wifi.neighbour.bss_count", "bss", .gauge, neighbourChannel, "nl80211 GET_SCAN (cached results): BSSes per channel, the router's own excluded"),
        wifi("wifi.neighbour.signal_dbm", "dbm", .distribution, neighbourChannel, "nl80211 GET_SCAN NL80211_BSS_SIGNAL_MBM / 100, one value per BSS"),
        MetricDescriptor(name: "wifi.dumps_interrupted", unit: "events", kind: .counterDelta, dataClass: .link, labels: [:],
                         source: "agent: nl80211 dumps the kernel marked NLM_F_DUMP_INTR (retried up to 3 times)"),
        MetricDescriptor(name: "wifi.events_dropped", unit: "events", kind: .counterDelta, dataClass: .link, labels: [:],
                         source: "agent: nl80211 events beyond 1024 per sample, or lost to a socket overrun"),
    ]

    static let systemMetrics: [MetricDescriptor] = [
        system("system.cpu_busy", "ratio", .distribution, "/proc/stat: 1 − Δ(idle + iowait) / Δ total over all CPUs"),
        system("system.memory_available", "bytes", .gauge, "/proc/meminfo MemAvailable"),
        system("system.memory_total", "bytes", .gauge, "/proc/meminfo MemTotal"),
        system("system.load1", "load", .gauge, "/proc/loadavg, 1-minute load average"),
        system("system.conntrack_entries", "entries", .gauge, "/proc/sys/net/netfilter/nf_conntrack_count (absent without conntrack)"),
        system("system.conntrack_max", "entries", .gauge, "/proc/sys/net/netfilter/nf_conntrack_max"),
        system("system.temperature", "celsius", .gauge, "/sys/class/thermal/thermal_zone*/temp / 1000, labelled by its type", labels: ["zone": .token]),
    ]

    static let base: [MetricDescriptor] = [
        .init(name: "link.rx_bytes", unit: "bytes", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 rx_bytes"),
        .init(name: "link.tx_bytes", unit: "bytes", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 tx_bytes"),
        .init(name: "link.rx_packets", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 rx_packets"),
        .init(name: "link.tx_packets", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 tx_packets"),
        .init(name: "link.rx_errors", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 rx_errors"),
        .init(name: "link.tx_errors", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 tx_errors"),
        .init(name: "link.rx_dropped", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 rx_dropped"),
        .init(name: "link.tx_dropped", unit: "packets", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_STATS64 tx_dropped"),
        .init(name: "link.rx_rate", unit: "bits_per_second", kind: .rate, dataClass: .link, labels: interface,
              source: "8 × Δ IFLA_STATS64 rx_bytes / Δ monotonic time"),
        .init(name: "link.tx_rate", unit: "bits_per_second", kind: .rate, dataClass: .link, labels: interface,
              source: "8 × Δ IFLA_STATS64 tx_bytes / Δ monotonic time"),
        .init(name: "link.oper_up", unit: "boolean", kind: .gauge, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_OPERSTATE == IF_OPER_UP"),
        .init(name: "link.carrier", unit: "boolean", kind: .gauge, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_CARRIER"),
        .init(name: "link.carrier_changes", unit: "events", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_CARRIER_CHANGES (up and down transitions)"),
        .init(name: "link.mtu", unit: "bytes", kind: .gauge, dataClass: .link, labels: interface,
              source: "rtnetlink IFLA_MTU"),
        .init(name: "link.speed", unit: "megabits_per_second", kind: .gauge, dataClass: .link, labels: interface,
              source: "ethtool netlink ETHTOOL_A_LINKMODES_SPEED (ioctl ETHTOOL_GSET fallback); absent when unknown"),
        .init(name: "link.full_duplex", unit: "boolean", kind: .gauge, dataClass: .link, labels: interface,
              source: "ethtool netlink ETHTOOL_A_LINKMODES_DUPLEX (ioctl fallback); absent when unknown"),
        .init(name: "link.counter_resets", unit: "events", kind: .counterDelta, dataClass: .link, labels: interface,
              source: "agent: counters went backwards or the ifindex changed (interface re-created)"),
        .init(name: "lan.clients", unit: "clients", kind: .gauge, dataClass: .clients, labels: interface,
              source: "rtnetlink RTM_GETNEIGH: distinct MACs in REACHABLE/STALE/DELAY/PROBE state"),
        .init(name: "lan.clients_new", unit: "clients", kind: .counterDelta, dataClass: .clients, labels: interface,
              source: "agent: pseudonyms seen this sample and not the one before"),
        .init(name: "lan.clients_gone", unit: "clients", kind: .counterDelta, dataClass: .clients, labels: interface,
              source: "agent: pseudonyms seen the sample before and not this one"),
        .init(name: "lan.clients_unreported", unit: "clients", kind: .gauge, dataClass: .clients, labels: interface,
              source: "agent: clients beyond lan_clients.max_clients, counted but not itemised"),
        .init(name: "lan.neighbours_unread", unit: "entries", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: neighbour-table entries beyond the 4096 read per sample (kernel default table limit is 1024 per family)"),
        .init(name: "lan.client.reachable", unit: "boolean", kind: .gauge, dataClass: .clients, labels: clientLabels,
              source: "rtnetlink NDA_LLADDR (pseudonymised) with NDA state REACHABLE = 1, STALE/DELAY/PROBE = 0"),
        .init(name: "agent.guard_dropped_series", unit: "series", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: series dropped by the outgoing-data guard (a label looked like a MAC, IP or SSID)"),
        .init(name: "agent.dropped_reports", unit: "reports", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: windows dropped unsent: the spool's byte bound (oldest segment first) or age bound, an unreadable record, or windows that never got a plausible wall clock"),
        .init(name: "agent.dropped_span_start_ms", unit: "unix_milliseconds", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: start of the oldest window in agent.dropped_reports (sent only when windows were dropped)"),
        .init(name: "agent.dropped_span_end_ms", unit: "unix_milliseconds", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: end of the newest window in agent.dropped_reports (sent only when windows were dropped)"),
        .init(name: "agent.unspooled_reports", unit: "reports", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: reports that could not be written to the spool (disk full, I/O error)"),
        .init(name: "agent.rejected_reports", unit: "reports", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: reports removed unsent because the collector refused them for good (the reason is in the agent's log) or their spooled body could not be read"),
        .init(name: "agent.spool.reports", unit: "reports", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: reports in the spool waiting for acknowledgement when the window was spooled"),
        .init(name: "agent.spool.bytes", unit: "bytes", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: bytes the spool's segment files take on disk when the window was spooled"),
        .init(name: "agent.config.version", unit: "version", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: version of the collector's remote settings in force (0: the local configuration alone)"),
        .init(name: "agent.config.rejected_version", unit: "version", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: version of remote settings the agent refused (the reason is in its log); absent when none was refused"),
        .init(name: "agent.clock.step_seconds", unit: "seconds", kind: .gauge, dataClass: .link, labels: [:],
              source: "agent: wall-clock step seen in this window (wall minus monotonic moved by more than 1 s), signed; absent without a step"),
        .init(name: "agent.dropped_batches", unit: "batches", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: sample batches dropped because the aggregation path was full (256 batches)"),
        .init(name: "agent.dropped_series", unit: "series", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: series dropped because a window reached sampling.max_series_per_window"),
    ]

    private static let byName: [String: MetricDescriptor] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
    /// The traffic metrics' own index: `analyze` looks up no other metric, and building the whole
    /// catalogue's index at its first sample was 0.26 ms of its folder's thread.
    private static let trafficByName: [String: MetricDescriptor] = Dictionary(uniqueKeysWithValues: trafficMetrics.map { ($0.name, $0) })

    public static func descriptor(named name: String) -> MetricDescriptor? {
        if name.hasPrefix("traffic."), let d = trafficByName[name] { return d }
        return byName[name]
    }
}
