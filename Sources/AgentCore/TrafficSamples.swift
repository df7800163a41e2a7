import Pseudonymisation
import TelemetryModel
import TrafficAnalysis

/// Turns one interval of the traffic analyser into catalogued samples: volumes by class, flows, RTT by
/// leg and method, TCP trouble counters, and per-client volumes and RTT by pseudonym (top N by bytes,
/// the rest folded into `others`). Raw MACs end here: only pseudonyms go into labels.
public enum TrafficSamples {
    public static func add(_ interval: TrafficInterval, pseudonymiser: Pseudonymiser, epoch: KeyEpoch, maxClients: Int,
                           captureDrops: UInt64?, into batch: inout SampleBatch) {
        for c in interval.classes {
            let labels = ["direction": c.key.direction.rawValue, "transport": c.key.transport.label, "ip": c.key.ipv6 ? "6" : "4"]
            batch.add("traffic.packets", labels, Double(c.packets))
            batch.add("traffic.bytes", labels, Double(c.bytes))
        }
        batch.add("traffic.flows_active", [:], Double(interval.activeFlows))
        batch.add("traffic.flows_new", [:], Double(interval.newFlows))
        batch.add("traffic.flows_evicted", [:], Double(interval.evictedFlows))
        batch.add("traffic.rtt_samples_dropped", [:], Double(interval.rttDropped))
        if let captureDrops { batch.add("traffic.capture_drops", [:], Double(captureDrops)) }
        // Thousands of RTT samples an interval fall into six series: grouped first (by position, not by a
        // hashed key), each series folded once, in the order of their label values.
        var byKind = [[Double]](repeating: [], count: RTTKind.all.count)
        for s in interval.rtt { byKind[RTTKind.position(s.leg, s.method)].append(Double(s.microseconds) / 1000) }
        for (k, values) in zip(RTTKind.all, byKind) where !values.isEmpty {
            batch.add("traffic.tcp.rtt", ["leg": k.leg.rawValue, "method": k.method.rawValue], values: values)
        }
        for (name, table) in [("traffic.tcp.retransmissions", interval.retransmissions), ("traffic.tcp.fast_retransmissions", interval.fastRetransmissions),
                              ("traffic.tcp.out_of_order", interval.outOfOrder), ("traffic.tcp.zero_window", interval.zeroWindow)] {
            for (direction, n) in table.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                batch.add(name, ["direction": direction.rawValue], Double(n))
            }
        }
        for (reason, n) in interval.skipped.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            batch.add("traffic.skipped_packets", ["reason": reason.rawValue], Double(n))
        }

        // Clients: busiest first; the MAC is turned into a pseudonym here and nowhere else.
        let ranked = interval.clients.sorted { a, b in
            let x = a.value.upstreamBytes + a.value.downstreamBytes, y = b.value.upstreamBytes + b.value.downstreamBytes
            return x != y ? x > y : a.key < b.key
        }
        var peerOf: [UInt64: String] = [:]
        for (mac, c) in ranked.prefix(maxClients) {
            let peer = pseudonymiser.pseudonym(of: macBytes(mac), kind: .clientMAC, epoch: epoch)
            peerOf[mac] = peer
            batch.add("traffic.client.bytes", ["peer": peer, "direction": "upstream"], Double(c.upstreamBytes))
            batch.add("traffic.client.bytes", ["peer": peer, "direction": "downstream"], Double(c.downstreamBytes))
            batch.add("traffic.client.packets", ["peer": peer], Double(c.packets))
        }
        // The rest (up to 512 an interval) go into `others` one value per client as before, but as runs:
        // a sample each cost a label set built and hashed, most of `analyze`'s time on a file of many hosts.
        let rest = ranked.dropFirst(maxClients)
        for (mac, _) in rest { peerOf[mac] = PeerLabel.others }
        batch.add("traffic.client.bytes", ["peer": PeerLabel.others, "direction": "upstream"], values: rest.map { Double($0.value.upstreamBytes) })
        batch.add("traffic.client.bytes", ["peer": PeerLabel.others, "direction": "downstream"], values: rest.map { Double($0.value.downstreamBytes) })
        batch.add("traffic.client.packets", ["peer": PeerLabel.others], values: rest.map { Double($0.value.packets) })
        batch.add("traffic.clients_unreported", [:], Double(max(0, ranked.count - maxClients) + interval.clientsDropped))
        // Samples in time order into one group per pseudonym and leg (`others` gathers many clients); a
        // sample costs one lookup on its raw MAC and leg, not a hash of the pseudonym string.
        var groupOf: [ClientLeg: Int] = [:]  // -1: a client the interval did not count (past its 512 clients)
        var groupIndex: [PeerLeg: Int] = [:]
        var groups: [(key: PeerLeg, values: [Double])] = []
        // Samples come in runs of one conversation: the previous sample's group is checked before hashing.
        var previous: (key: ClientLeg, group: Int)?
        for s in interval.rtt {
            guard let mac = s.client else { continue }
            let clientLeg = ClientLeg(mac: mac, leg: s.leg)
            let g: Int
            if let previous, previous.key == clientLeg {
                g = previous.group
            } else if let known = groupOf[clientLeg] {
                g = known
            } else if let peer = peerOf[mac] {
                let key = PeerLeg(peer: peer, leg: s.leg)
                if let existing = groupIndex[key] { g = existing } else {
                    g = groups.count
                    groups.append((key, []))
                    groupIndex[key] = g
                }
                groupOf[clientLeg] = g
            } else {
                groupOf[clientLeg] = -1
                g = -1
            }
            previous = (clientLeg, g)
            if g >= 0 { groups[g].values.append(Double(s.microseconds) / 1000) }
        }
        let byPeer = Dictionary(uniqueKeysWithValues: groups.map { ($0.key, $0.values) })
        for (k, values) in byPeer.sorted(by: { ($0.key.peer, $0.key.leg.rawValue) < ($1.key.peer, $1.key.leg.rawValue) }) {
            batch.add("traffic.client.rtt", ["peer": k.peer, "leg": k.leg.rawValue], values: values)
        }
    }

    struct RTTKind: Hashable {
        let leg: RTTLeg; let method: RTTMethod
        /// Every leg and method, ordered by their label values.
        static let all: [RTTKind] = [RTTLeg.lan, .wan].flatMap { leg in [RTTMethod.handshake, .seqack, .timestamps].map { RTTKind(leg: leg, method: $0) } }
        /// The index of (leg, method) in ``all`` (a new case fails to compile here until it has a place).
        static func position(_ leg: RTTLeg, _ method: RTTMethod) -> Int {
            let l = switch leg { case .lan: 0; case .wan: 3 }
            let m = switch method { case .handshake: 0; case .seqack: 1; case .timestamps: 2 }
            return l + m
        }
    }
    struct PeerLeg: Hashable { let peer: String; let leg: RTTLeg }
    struct ClientLeg: Hashable { let mac: UInt64; let leg: RTTLeg }

    static func macBytes(_ mac: UInt64) -> [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: mac >> (8 * (5 - $0))) } }
}
