#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import NetlinkKit
import Pseudonymisation

/// Reports the LAN clients in the kernel's neighbour table, by pseudonym only. The raw MAC lives for the
/// duration of one loop iteration and is never stored, logged or compared across samples.
public final class LANClientSampler: Sampler {
    public let name = "lan_clients"
    private let config: AgentConfiguration.LANClients
    private let reportOUI: Bool
    private let pseudonymiser: Pseudonymiser
    private let neighbours: NeighbourReader
    /// Pseudonyms seen in the previous sample, per interface, for new/gone counts.
    private var previous: [String: Set<String>] = [:]
    private var previousEpoch: KeyEpoch?

    public init(config: AgentConfiguration.LANClients, reportOUI: Bool, pseudonymiser: Pseudonymiser) throws {
        self.config = config
        self.reportOUI = reportOUI
        self.pseudonymiser = pseudonymiser
        self.neighbours = try NeighbourReader()
    }

    public func sample(_ context: SampleContext, into batch: inout SampleBatch) throws {
        // Read the whole table (the kernel caps it at gc_thresh3, 1024 per family by default) so that client
        // counts stay exact when the itemised list is capped at max_clients.
        let (entries, unread) = try neighbours.entries(limit: 4096)
        batch.add("lan.neighbours_unread", [:], Double(unread))
        if previousEpoch != context.epoch {
            previous = [:]  // pseudonyms of two epochs never compare: no new/gone across the boundary
            previousEpoch = context.epoch
        }
        var byInterface: [String: [String: (reachable: Bool, labels: [String: String])]] = [:]
        var nameCache: [Int32: String] = [:]
        for entry in entries {
            guard let interface = nameCache[entry.interfaceIndex] ?? Self.interfaceName(entry.interfaceIndex) else { continue }
            nameCache[entry.interfaceIndex] = interface
            guard config.interfaces.contains(where: { globMatches($0, interface) }),
                  let mac = MACAddress(bytes: entry.linkLayerAddress), !mac.isMulticast, !mac.isZero else { continue }
            let pseudonym = pseudonymiser.pseudonym(of: mac, kind: .clientMAC, epoch: context.epoch)
            var labels = ["interface": interface, "client": pseudonym,
                          "mac_kind": mac.isLocallyAdministered ? "local" : "global"]
            labels["oui"] = reportOUI ? (mac.organizationallyUniqueIdentifier ?? "00-00-00") : "00-00-00"
            // One MAC can have an IPv4 and an IPv6 entry: reachable if any of them is.
            let reachable = entry.state == .reachable || (byInterface[interface]?[pseudonym]?.reachable ?? false)
            byInterface[interface, default: [:]][pseudonym] = (reachable, labels)
        }
        var present = Set<String>()
        for interface in byInterface.keys.sorted() {
            let clients = byInterface[interface]!
            present.insert(interface)
            let now = Set(clients.keys)
            let labels = ["interface": interface]
            batch.add("lan.clients", labels, Double(now.count))
            if let before = previous[interface] {
                batch.add("lan.clients_new", labels, Double(now.subtracting(before).count))
                batch.add("lan.clients_gone", labels, Double(before.subtracting(now).count))
            }
            // Itemise a bounded, stable subset: sorted by pseudonym, so the same clients keep their series.
            let itemised = clients.keys.sorted().prefix(config.maxClients)
            batch.add("lan.clients_unreported", labels, Double(clients.count - itemised.count))
            for p in itemised {
                let c = clients[p]!
                batch.add("lan.client.reachable", c.labels, c.reachable ? 1 : 0)
            }
            previous[interface] = now
        }
        for (interface, before) in previous where !present.contains(interface) && !before.isEmpty {
            batch.add("lan.clients", ["interface": interface], 0)
            batch.add("lan.clients_gone", ["interface": interface], Double(before.count))
            previous[interface] = []
        }
    }

    static func interfaceName(_ index: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(UInt32(index), &buffer) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
