import CNetlink

/// 64-bit interface counters as the kernel reports them in IFLA_STATS64.
public struct LinkCounters: Sendable, Equatable {
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var rxErrors: UInt64 = 0
    public var txErrors: UInt64 = 0
    public var rxDropped: UInt64 = 0
    public var txDropped: UInt64 = 0
    public init() {}
}

/// One interface as rtnetlink describes it at one instant.
public struct LinkSnapshot: Sendable, Equatable {
    public var name: String
    /// Changes when the interface is deleted and re-created under the same name.
    public var index: Int32
    public var counters: LinkCounters
    /// IFLA_OPERSTATE (RFC 2863): 6 is up.
    public var operState: UInt8
    public var carrier: Bool
    /// IFLA_CARRIER_CHANGES, when the kernel reports it.
    public var carrierChanges: UInt32?
    public var mtu: UInt32
    public var isLoopback: Bool

    public var isOperUp: Bool { operState == UInt8(IF_OPER_UP) || (isLoopback && operState == UInt8(IF_OPER_UNKNOWN) && carrier) }
}

/// Reads every interface's counters and state through libnl-route's link cache (one RTM_GETLINK dump).
public final class LinkStatsReader {
    private let socket: NetlinkSocket

    /// Opens an rtnetlink socket in the calling thread's network namespace.
    public init() throws(NetlinkError) {
        socket = try NetlinkSocket(netlinkProtocol: NETLINK_ROUTE)
    }

    public var fileDescriptor: Int32 { socket.fileDescriptor }

    public func snapshot() throws(NetlinkError) -> [LinkSnapshot] {
        var cache: OpaquePointer?
        try check(rtnl_link_alloc_cache(socket.handle, Int32(AF_UNSPEC), &cache), "RTM_GETLINK dump failed")
        guard let cache else { return [] }
        defer { nl_cache_free(cache) }
        var result: [LinkSnapshot] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            let link = current
            result.append(Self.snapshot(of: link))
            object = nl_cache_get_next(current)
        }
        return result
    }

    private static func snapshot(of link: OpaquePointer) -> LinkSnapshot {
        func stat(_ id: rtnl_link_stat_id_t) -> UInt64 { rtnl_link_get_stat(link, id) }
        var counters = LinkCounters()
        counters.rxBytes = stat(RTNL_LINK_RX_BYTES)
        counters.txBytes = stat(RTNL_LINK_TX_BYTES)
        counters.rxPackets = stat(RTNL_LINK_RX_PACKETS)
        counters.txPackets = stat(RTNL_LINK_TX_PACKETS)
        counters.rxErrors = stat(RTNL_LINK_RX_ERRORS)
        counters.txErrors = stat(RTNL_LINK_TX_ERRORS)
        counters.rxDropped = stat(RTNL_LINK_RX_DROPPED)
        counters.txDropped = stat(RTNL_LINK_TX_DROPPED)
        var changes: UInt32 = 0
        let hasChanges = rtnl_link_get_carrier_changes(link, &changes) == 0
        let name = rtnl_link_get_name(link).map { String(cString: $0) } ?? ""
        return LinkSnapshot(
            name: name,
            index: rtnl_link_get_ifindex(link),
            counters: counters,
            operState: rtnl_link_get_operstate(link),
            carrier: rtnl_link_get_carrier(link) != 0,
            carrierChanges: hasChanges ? changes : nil,
            mtu: rtnl_link_get_mtu(link),
            isLoopback: rtnl_link_get_flags(link) & UInt32(IFF_LOOPBACK.rawValue) != 0)
    }
}
