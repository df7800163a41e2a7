import AgentConfig
@testable import AgentCore
import Foundation
@testable import NetlinkKit
import Pseudonymisation
import TelemetryModel
import Testing

/// Acceptance 1 and 2 of the foundation issue: real rtnetlink and ethtool netlink on this kernel, veth
/// pairs in a network namespace, frames of known number and size.
@Suite(.enabled(if: TestSupport.canUseNetns, "needs root and iproute2 for network namespaces"), .serialized)
struct LinkSamplingTests {
    static func context() -> SampleContext { SampleContext(time: .now(), epoch: KeyEpoch(id: 1)) }

    /// A context `ms` after `t0` on both clocks: rates need their interval (``SampleContext/minimumRateSeconds``).
    static func context(_ t0: SampleTime, plus ms: UInt64) -> SampleContext {
        SampleContext(time: SampleTime(wallMilliseconds: t0.wallMilliseconds + Int64(ms), monotonicNanoseconds: t0.monotonicNanoseconds + ms * 1_000_000),
                      epoch: KeyEpoch(id: 1))
    }

    static func value(_ batch: SampleBatch, _ metric: String, _ interface: String) -> Double? {
        batch.samples.first { $0.descriptor.name == metric && $0.labels["interface"] == interface }?.value
    }

    /// A namespace with veth pair mpa0 <-> mpb0, up, with IPv6 address generation off so the kernel sends
    /// nothing of its own: every frame on the pair is one the test sent.
    static func vethNamespace() throws -> NetworkNamespace {
        let ns = try NetworkNamespace()
        try ns.exec("ip link add mpa0 type veth peer name mpb0")
        for i in ["mpa0", "mpb0"] {
            try ns.exec("ip link set \(i) addrgenmode none")
            try ns.exec("ip link set \(i) up")
        }
        return ns
    }

    static let link = AgentConfiguration.Link(enabled: true, interfaces: ["mp*"], exclude: [], includeLoopback: false)

    @Test func vethCountersEqualTheKernelsAndSpeedEqualsEthtool() throws {
        let ns = try Self.vethNamespace()
        let sampler = try ns.run { try LinkSampler(config: Self.link) }
        let t0 = SampleTime.now()
        var first = SampleBatch()
        try ns.run { try sampler.sample(Self.context(t0, plus: 0), into: &first) }
        #expect(Self.value(first, "link.rx_bytes", "mpb0") == nil, "the first sample is a baseline")

        let txBefore = try TestSupport.sysfsCounter("mpa0", "tx_bytes", namespace: ns.name)
        let rxBefore = try TestSupport.sysfsCounter("mpb0", "rx_bytes", namespace: ns.name)
        let rxPacketsBefore = try TestSupport.sysfsCounter("mpb0", "rx_packets", namespace: ns.name)
        let frames = 250, size = 600
        try ns.run { try RawFrames.send(interface: "mpa0", count: frames, size: size) }
        let txAfter = try TestSupport.sysfsCounter("mpa0", "tx_bytes", namespace: ns.name)
        let rxAfter = try TestSupport.sysfsCounter("mpb0", "rx_bytes", namespace: ns.name)
        let rxPacketsAfter = try TestSupport.sysfsCounter("mpb0", "rx_packets", namespace: ns.name)

        var second = SampleBatch()
        try ns.run { try sampler.sample(Self.context(t0, plus: 1000), into: &second) }

        #expect(rxAfter - rxBefore == UInt64(frames * size), "the kernel counted exactly the frames sent")
        #expect(Self.value(second, "link.tx_bytes", "mpa0") == Double(txAfter - txBefore))
        #expect(Self.value(second, "link.rx_bytes", "mpb0") == Double(rxAfter - rxBefore))
        #expect(Self.value(second, "link.rx_packets", "mpb0") == Double(rxPacketsAfter - rxPacketsBefore))
        #expect(Self.value(second, "link.tx_packets", "mpa0") == Double(frames))
        #expect(Self.value(second, "link.rx_errors", "mpb0") == 0)
        let rate = try #require(Self.value(second, "link.rx_rate", "mpb0"))
        #expect(rate == Double(rxAfter - rxBefore) * 8, "the bytes of one second, in bit/s")

        // Speed and duplex equal what `ethtool IF` prints (veth: 10000Mb/s, Full).
        let ethtool = try ns.exec("ethtool mpa0")
        let speedLine = try #require(ethtool.split(separator: "\n").first { $0.contains("Speed:") })
        let duplexLine = try #require(ethtool.split(separator: "\n").first { $0.contains("Duplex:") })
        let speed = Double(speedLine.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "Mb/s", with: ""))
        #expect(speed != nil)
        #expect(Self.value(second, "link.speed", "mpa0") == speed)
        #expect(Self.value(second, "link.full_duplex", "mpa0") == (duplexLine.contains("Full") ? 1 : 0))
        #expect(Self.value(second, "link.mtu", "mpa0") == 1500)
        #expect(Self.value(second, "link.oper_up", "mpa0") == 1)
    }

    @Test func ethtoolNetlinkAndIoctlAgree() throws {
        let ns = try Self.vethNamespace()
        let (viaNetlink, viaIoctl) = try ns.run { () -> (LinkModes, LinkModes) in
            let e = EthtoolLinkModes()
            return (e.linkModes(of: "mpa0"), EthtoolLinkModes.queryIoctl(interface: "mpa0"))
        }
        #expect(viaNetlink.source == .netlink)
        #expect(viaIoctl.source == .ioctl)
        #expect(viaNetlink.speedMbps == viaIoctl.speedMbps)
        #expect(viaNetlink.fullDuplex == viaIoctl.fullDuplex)
        #expect(viaNetlink.speedMbps == 10000)
    }

    @Test func unknownSpeedIsReportedAsUnknownNotZero() throws {
        let ns = try NetworkNamespace()
        // A bridge without ports: ethtool prints "Speed: Unknown!" and "Duplex: Unknown! (255)".
        try ns.exec("ip link add mpd0 type bridge")
        try ns.exec("ip link set mpd0 up")
        #expect(try ns.exec("ethtool mpd0").contains("Speed: Unknown!"))
        var batch = SampleBatch()
        try ns.run {
            let sampler = try LinkSampler(config: Self.link)
            try sampler.sample(Self.context(), into: &batch)
        }
        #expect(Self.value(batch, "link.mtu", "mpd0") != nil, "the interface was sampled")
        #expect(Self.value(batch, "link.speed", "mpd0") == nil)
        #expect(Self.value(batch, "link.full_duplex", "mpd0") == nil)
    }

    @Test func recreatingAnInterfaceNeverYieldsANegativeOrAbsurdRate() throws {
        let ns = try Self.vethNamespace()
        let sampler = try ns.run { try LinkSampler(config: Self.link) }
        let t0 = SampleTime.now()
        var step: UInt64 = 0
        func next() -> SampleContext { step += 1; return Self.context(t0, plus: step * 1000) }
        var batch = SampleBatch()
        try ns.run { try sampler.sample(next(), into: &batch) }
        try ns.run { try RawFrames.send(interface: "mpa0", count: 500, size: 1000) }
        batch = SampleBatch()
        try ns.run { try sampler.sample(next(), into: &batch) }
        #expect(Self.value(batch, "link.tx_bytes", "mpa0") == 500_000)

        // Delete and re-create: the counters restart at zero under a new ifindex.
        try ns.exec("ip link del mpa0")
        try ns.exec("ip link add mpa0 type veth peer name mpb0")
        for i in ["mpa0", "mpb0"] {
            try ns.exec("ip link set \(i) addrgenmode none")
            try ns.exec("ip link set \(i) up")
        }
        try ns.run { try RawFrames.send(interface: "mpa0", count: 3, size: 100) }
        batch = SampleBatch()
        try ns.run { try sampler.sample(next(), into: &batch) }
        #expect(Self.value(batch, "link.counter_resets", "mpa0") == 1)
        #expect(Self.value(batch, "link.tx_bytes", "mpa0") == nil, "no delta across a reset")
        #expect(Self.value(batch, "link.tx_rate", "mpa0") == nil, "no rate across a reset")

        try ns.run { try RawFrames.send(interface: "mpa0", count: 7, size: 100) }
        batch = SampleBatch()
        try ns.run { try sampler.sample(next(), into: &batch) }
        #expect(Self.value(batch, "link.tx_bytes", "mpa0") == 700)
        let rate = try #require(Self.value(batch, "link.tx_rate", "mpa0"))
        #expect(rate >= 0 && rate < 1e9, "rate \(rate) is plausible for 700 bytes")
        for s in batch.samples { #expect(s.value >= 0 && s.value < 1e15, "\(s.descriptor.name) = \(s.value)") }
    }

    /// The last sample before a shutdown comes milliseconds after the one before: its bytes count, but
    /// no rate is made of them (500 frames in 6 ms would read as 667 Mbit/s).
    @Test func aFewMillisecondsGiveDeltasButNoRate() throws {
        let ns = try Self.vethNamespace()
        let sampler = try ns.run { try LinkSampler(config: Self.link) }
        let t0 = SampleTime.now()
        func at(_ ms: UInt64) -> SampleContext { Self.context(t0, plus: ms) }
        var batch = SampleBatch()
        try ns.run { try sampler.sample(at(0), into: &batch) }
        try ns.run { try RawFrames.send(interface: "mpa0", count: 500, size: 1000) }
        batch = SampleBatch()
        try ns.run { try sampler.sample(at(6), into: &batch) }
        #expect(Self.value(batch, "link.tx_bytes", "mpa0") == 500_000, "the bytes of those 6 ms are kept")
        #expect(Self.value(batch, "link.tx_rate", "mpa0") == nil, "no rate over 6 ms")
        try ns.run { try RawFrames.send(interface: "mpa0", count: 7, size: 100) }
        batch = SampleBatch()
        try ns.run { try sampler.sample(at(2_006), into: &batch) }
        #expect(Self.value(batch, "link.tx_bytes", "mpa0") == 700)
        let rate = try #require(Self.value(batch, "link.tx_rate", "mpa0"), "the next interval has its rate")
        #expect(abs(rate - 700 * 8 / 2) < 1e-6, "700 bytes over 2 s: \(rate) bit/s")
    }

    @Test func interfaceNamesThatEmbedAMACAreRelabelled() throws {
        let ns = try NetworkNamespace()
        try ns.exec("ip link add enx001b213a4f5e type veth peer name mpz0")
        try ns.exec("ip link set enx001b213a4f5e up")
        let index = try ns.exec("cat /sys/class/net/enx001b213a4f5e/ifindex").trimmingCharacters(in: .whitespacesAndNewlines)
        var batch = SampleBatch()
        try ns.run {
            let sampler = try LinkSampler(config: .init(enabled: true, interfaces: ["enx*"], exclude: [], includeLoopback: false))
            try sampler.sample(Self.context(), into: &batch)
        }
        #expect(Self.value(batch, "link.mtu", "enx-if\(index)") == 1500)
        #expect(!batch.samples.contains { $0.labels.values.contains { $0.contains("001b213a4f5e") } })
    }

    @Test func samplerSocketsAreClosedWhenReleased() throws {
        let ns = try NetworkNamespace()
        // Tests run in parallel, so the descriptor number may be reused by another test at once: compare
        // the socket's identity (its inode, from /proc/self/fd) rather than the number.
        func identity(_ fd: Int32) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") }
        let (fd, socket) = try ns.run { () -> (Int32, String?) in
            let reader = try LinkStatsReader()
            return (reader.fileDescriptor, identity(reader.fileDescriptor))
        }
        #expect(fd >= 0)
        #expect(socket?.hasPrefix("socket:") == true, "the reader held a socket: \(socket ?? "nothing")")
        #expect(identity(fd) != socket, "the netlink socket is closed after deinit")
    }
}

/// The LAN-client sampler over the kernel's real neighbour table (entries added with `ip neigh`).
@Suite(.enabled(if: TestSupport.canUseNetns, "needs root and iproute2 for network namespaces"))
struct LANClientSamplingTests {
    static let macs = ["00:1b:21:3a:4f:5e", "00:1b:21:3a:4f:5f", "da:a1:19:6b:22:07", "02:00:00:00:00:01"]

    static func values(_ batch: SampleBatch, _ metric: String) -> [SampleBatch.Sample] {
        batch.samples.filter { $0.descriptor.name == metric }
    }

    @Test func clientsAreCountedCappedAndFollowedByPseudonymOnly() throws {
        let ns = try LinkSamplingTests.vethNamespace()
        for (i, mac) in Self.macs.prefix(3).enumerated() {
            try ns.exec("ip neigh add fe80::\(i + 10) lladdr \(mac) dev mpa0 nud stale")
        }
        let p = Pseudonymiser(secret: try DeviceSecret(bytes: Array(repeating: 3, count: 32)))
        let sampler = try ns.run {
            try LANClientSampler(config: .init(enabled: true, interfaces: ["mpa*"], maxClients: 2), reportOUI: true, pseudonymiser: p)
        }
        func sample(epoch: UInt32 = 1) throws -> SampleBatch {
            var b = SampleBatch()
            try ns.run { try sampler.sample(SampleContext(time: .now(), epoch: KeyEpoch(id: epoch)), into: &b) }
            return b
        }

        var b = try sample()
        #expect(Self.values(b, "lan.clients").first?.value == 3)
        #expect(Self.values(b, "lan.clients_unreported").first?.value == 1, "max_clients caps the itemised list")
        let items = Self.values(b, "lan.client.reachable")
        #expect(items.count == 2)
        #expect(items.allSatisfy { $0.value == 0 }, "stale entries are present but not reachable")
        #expect(Self.values(b, "lan.clients_new").isEmpty, "no new/gone on the first sample")
        let expected = Set(Self.macs.prefix(3).map { p.pseudonym(of: MACAddress(parsing: $0)!, epoch: KeyEpoch(id: 1)) })
        #expect(Set(items.map { $0.labels["client"]! }).isSubset(of: expected))
        for s in b.samples { #expect(IdentifierGuard().finding(in: s.labels.values.joined(separator: " ")) == nil) }

        // One client leaves, another arrives.
        try ns.exec("ip neigh del fe80::10 dev mpa0")
        try ns.exec("ip neigh add fe80::20 lladdr \(Self.macs[3]) dev mpa0 nud reachable")
        b = try sample()
        #expect(Self.values(b, "lan.clients").first?.value == 3)
        #expect(Self.values(b, "lan.clients_new").first?.value == 1)
        #expect(Self.values(b, "lan.clients_gone").first?.value == 1)

        // A new key epoch: pseudonyms change and are not compared across the boundary.
        b = try sample(epoch: 2)
        #expect(Self.values(b, "lan.clients_new").isEmpty)
        let next = Set(Self.values(b, "lan.client.reachable").map { $0.labels["client"]! })
        #expect(next.isDisjoint(with: expected))
    }
}
