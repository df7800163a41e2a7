import CNetlink

/// One entry of the kernel's neighbour table (ARP for IPv4, NDP for IPv6) with a link-layer address.
public struct NeighbourEntry: Sendable, Equatable {
    public var interfaceIndex: Int32
    /// The link-layer address (6 bytes on Ethernet and Wi-Fi). Raw: pseudonymise before it goes anywhere.
    public var linkLayerAddress: [UInt8]
    public var state: State

    public enum State: String, Sendable {
        case reachable, stale, delay, probe, other
    }
}

/// Reads the neighbour table through libnl-route (one RTM_GETNEIGH dump).
public final class NeighbourReader {
    private let socket: NetlinkSocket

    public init() throws(NetlinkError) {
        socket = try NetlinkSocket(netlinkProtocol: NETLINK_ROUTE)
    }

    /// Entries with a 6-byte link-layer address, at most `limit` (the rest are counted in `overflow`).
    public func entries(limit: Int) throws(NetlinkError) -> (entries: [NeighbourEntry], overflow: Int) {
        var cache: OpaquePointer?
        try check(rtnl_neigh_alloc_cache(socket.handle, &cache), "RTM_GETNEIGH dump failed")
        guard let cache else { return ([], 0) }
        defer { nl_cache_free(cache) }
        var result: [NeighbourEntry] = []
        var overflow = 0
        var object = nl_cache_get_first(cache)
        while let current = object {
            defer { object = nl_cache_get_next(current) }
            let neigh = current
            guard let lladdr = rtnl_neigh_get_lladdr(neigh), nl_addr_get_len(lladdr) == 6,
                  let raw = nl_addr_get_binary_addr(lladdr) else { continue }
            let state = rtnl_neigh_get_state(neigh)
            let mapped: NeighbourEntry.State
            switch state {
            case NUD_REACHABLE: mapped = .reachable
            case NUD_STALE: mapped = .stale
            case NUD_DELAY: mapped = .delay
            case NUD_PROBE: mapped = .probe
            default: mapped = .other
            }
            guard mapped != .other else { continue }
            guard result.count < limit else {
                overflow += 1
                continue
            }
            let bytes = Array(UnsafeRawBufferPointer(start: raw, count: 6))
            result.append(NeighbourEntry(interfaceIndex: rtnl_neigh_get_ifindex(neigh), linkLayerAddress: bytes, state: mapped))
        }
        return (result, overflow)
    }
}
