import AgentConfig
import Aggregation
import NetlinkKit
import TelemetryModel

/// Samples every configured interface: IFLA_STATS64 counters (as deltas and rates), state, MTU, and
/// speed/duplex through ethtool. See docs/metrics.md for each metric.
public final class LinkSampler: Sampler {
    public let name = "link"
    private let config: AgentConfiguration.Link
    private let stats: LinkStatsReader
    private let ethtool: EthtoolLinkModes
    private var tracker = CounterTracker<String>(maxKeys: 512)
    /// Interfaces sampled at most, so a host with thousands of VLANs cannot blow the series budget.
    private let maxInterfaces: Int

    /// Opens the netlink sockets in the calling thread's network namespace.
    public init(config: AgentConfiguration.Link, maxInterfaces: Int = 64) throws {
        self.config = config
        self.stats = try LinkStatsReader()
        self.ethtool = EthtoolLinkModes()
        self.maxInterfaces = maxInterfaces
    }

    public func sample(_ context: SampleContext, into batch: inout SampleBatch) throws {
        let links = try stats.snapshot().filter { config.samples($0.name, isLoopback: $0.isLoopback) }.prefix(maxInterfaces)
        var present = Set<String>()
        for link in links {
            present.insert(link.name)
            let labels = ["interface": Self.label(for: link)]
            let c = link.counters
            let reading = CounterTracker<String>.Reading(
                generation: Int64(link.index),
                counters: [c.rxBytes, c.txBytes, c.rxPackets, c.txPackets, c.rxErrors, c.txErrors, c.rxDropped, c.txDropped,
                           UInt64(link.carrierChanges ?? 0)],
                monotonicNanoseconds: context.time.monotonicNanoseconds)
            switch tracker.update(link.name, reading) {
            case .baseline:
                break
            case .reset:
                batch.add("link.counter_resets", labels, 1)
            case .delta(let d, let seconds):
                batch.add("link.rx_bytes", labels, Double(d[0]))
                batch.add("link.tx_bytes", labels, Double(d[1]))
                batch.add("link.rx_packets", labels, Double(d[2]))
                batch.add("link.tx_packets", labels, Double(d[3]))
                batch.add("link.rx_errors", labels, Double(d[4]))
                batch.add("link.tx_errors", labels, Double(d[5]))
                batch.add("link.rx_dropped", labels, Double(d[6]))
                batch.add("link.tx_dropped", labels, Double(d[7]))
                if link.carrierChanges != nil { batch.add("link.carrier_changes", labels, Double(d[8])) }
                if seconds >= SampleContext.minimumRateSeconds {
                    batch.add("link.rx_rate", labels, Double(d[0]) * 8 / seconds)
                    batch.add("link.tx_rate", labels, Double(d[1]) * 8 / seconds)
                }
            }
            batch.add("link.oper_up", labels, link.isOperUp ? 1 : 0)
            batch.add("link.carrier", labels, link.carrier ? 1 : 0)
            batch.add("link.mtu", labels, Double(link.mtu))
            let modes = ethtool.linkModes(of: link.name)
            if let speed = modes.speedMbps { batch.add("link.speed", labels, Double(speed)) }
            if let full = modes.fullDuplex { batch.add("link.full_duplex", labels, full ? 1 : 0) }
        }
        tracker.retain(only: present)
    }

    private static let macGuard = IdentifierGuard()

    /// The interface label. Names that embed a MAC or IP address (systemd's `enx001b213a4f5e` for USB
    /// modems and adapters) are replaced by their letter prefix and ifindex (`enx-if7`), so the link keeps
    /// its series without the address leaving the device.
    public static func label(for link: LinkSnapshot) -> String {
        guard macGuard.finding(in: link.name) != nil else { return link.name }
        let prefix = link.name.prefix { $0.isLetter }.prefix(4)
        return "\(prefix.isEmpty ? "if" : String(prefix))-if\(link.index)"
    }
}
