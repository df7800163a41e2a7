/// A retention class. Every metric belongs to exactly one; retention is configured per class.
public struct DataClass: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Interface counters, speed, state: infrastructure health, no personal data.
    public static let link = DataClass(rawValue: "link")
    /// LAN client presence by pseudonym: personal data, kept shortest among the telemetry classes.
    public static let clients = DataClass(rawValue: "clients")
    /// Radio and per-station quality (later issue).
    public static let wifi = DataClass(rawValue: "wifi")
    /// Packet-header derived performance: traffic data under telecom secrecy (later issue).
    public static let traffic = DataClass(rawValue: "traffic")
    /// Data from on-demand troubleshooting sessions (later issue).
    public static let troubleshooting = DataClass(rawValue: "troubleshooting")
    /// The collector's own audit trail of operator access.
    public static let audit = DataClass(rawValue: "audit")

    /// The classes every retention policy must define.
    public static let required: [DataClass] = [.link, .clients, .wifi, .traffic, .troubleshooting, .audit]

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
}

/// How a series' samples relate to the source.
public enum MetricKind: String, Sendable {
    /// Each sample is a counter delta over one sampling interval; `sum` is the window total.
    case counterDelta = "counter_delta"
    /// Each sample is an instantaneous reading.
    case gauge
    /// Each sample is a rate over one sampling interval; shipped with a quantile sketch.
    case rate
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

    public static let all: [MetricDescriptor] = [
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
              source: "agent: reports dropped because the outgoing queue was full"),
        .init(name: "agent.dropped_series", unit: "series", kind: .counterDelta, dataClass: .link, labels: [:],
              source: "agent: series dropped because a window reached sampling.max_series_per_window"),
    ]

    private static let byName: [String: MetricDescriptor] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    public static func descriptor(named name: String) -> MetricDescriptor? { byName[name] }
}
