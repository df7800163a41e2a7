#if canImport(Glibc)
import Glibc
#endif
import PacketCapture

/// Limits of the analyser's state, sized for a home router.
public struct TrafficLimits: Sendable {
    /// Conversations tracked at once. Past it the least recently seen is evicted (counted).
    public var maxFlows: Int
    /// A TCP conversation idle this long is forgotten; UDP/ICMP/other after `idleSecondsDatagram`.
    public var idleSecondsTCP: Int
    public var idleSecondsDatagram: Int
    /// Streams kept for `analyze` (first frame, handshake RTT); 0 in the live agent.
    public var maxStreamRecords: Int

    public init(maxFlows: Int = 16_384, idleSecondsTCP: Int = 300, idleSecondsDatagram: Int = 60, maxStreamRecords: Int = 0) {
        precondition(maxFlows > 0)
        self.maxFlows = maxFlows
        self.idleSecondsTCP = idleSecondsTCP
        self.idleSecondsDatagram = idleSecondsDatagram
        self.maxStreamRecords = maxStreamRecords
    }
}

/// A flow table's memory, made resident by `populate()` from any thread while its analyser runs: the
/// pages are faulted in without a byte changed, and the table stays mapped while this is held.
/// `populate` reads only the table's fixed address and size, never its slots.
public struct FlowTableResidency: @unchecked Sendable {
    let slots: TrafficAnalyzer.FlowSlots

    /// Makes the table's first `flows` slots resident (`MADV_POPULATE_WRITE`, Linux 5.14; in whole huge
    /// pages where the table has them), or the whole table when `flows` is nil. Slots past them are
    /// faulted in as flows first use them, as everything is on an older kernel.
    public func populate(flows: Int? = nil) { slots.populateConcurrently(flows: flows) }
}

/// Where a packet goes relative to the home network.
public enum TrafficDirection: String, Sendable, CaseIterable {
    /// LAN → WAN.
    case upstream
    /// WAN → LAN.
    case downstream
    /// LAN → LAN.
    case lan
    /// WAN → WAN (a capture on a transit link, or addresses the LAN test cannot place).
    case wan
}

/// Which part of a round trip an RTT covers, seen from the capture point (the router).
public enum RTTLeg: String, Sendable {
    /// Router ↔ a LAN host (the Wi-Fi/Ethernet side).
    case lan
    /// Router ↔ an Internet host.
    case wan
}

public enum RTTMethod: String, Sendable {
    case handshake
    case timestamps
    case seqack
}

/// One RTT measurement.
public struct RTTSample: Sendable {
    public var leg: RTTLeg
    public var method: RTTMethod
    public var microseconds: Int64
    /// The LAN endpoint's MAC (raw, on the device only), when the capture has Ethernet headers.
    public var client: UInt64?
}

/// Per-client counters of one interval, keyed by raw MAC inside the device; pseudonymised before use.
public struct ClientTraffic: Sendable {
    public var upstreamBytes: UInt64 = 0
    public var downstreamBytes: UInt64 = 0
    public var packets: UInt64 = 0
}

/// What the analyser saw over one interval; the live agent turns it into samples.
public struct TrafficInterval: Sendable {
    public struct ClassKey: Hashable, Sendable {
        public var direction: TrafficDirection
        public var transport: TransportProtocol
        public var ipv6: Bool
    }

    /// Packets and bytes per class, in fixed slots (4 directions × 4 transports × 2 IP versions): one
    /// array index per packet instead of two hash lookups.
    var classPackets = InlineArray<32, UInt64>(repeating: 0)
    var classBytes = InlineArray<32, UInt64>(repeating: 0)

    static func slot(_ d: TrafficDirection, _ t: TransportProtocol, _ v6: Bool) -> Int {
        let di: Int = switch d { case .upstream: 0; case .downstream: 1; case .lan: 2; case .wan: 3 }
        let ti: Int = switch t { case .tcp: 0; case .udp: 1; case .icmp: 2; case .other: 3 }
        return di * 8 + ti * 2 + (v6 ? 1 : 0)
    }

    /// The classes that saw packets this interval, with their packet and byte counts.
    public var classes: [(key: ClassKey, packets: UInt64, bytes: UInt64)] {
        var out: [(ClassKey, UInt64, UInt64)] = []
        for d in TrafficDirection.allCases {
            for t in [TransportProtocol.tcp, .udp, .icmp, .other] {
                for v6 in [false, true] {
                    let i = Self.slot(d, t, v6)
                    if classPackets[i] > 0 { out.append((ClassKey(direction: d, transport: t, ipv6: v6), classPackets[i], classBytes[i])) }
                }
            }
        }
        return out
    }
    public var rtt: [RTTSample] = []
    /// RTT samples beyond the per-interval cap (kept by reservoir-free truncation; counted).
    public var rttDropped = 0
    public var retransmissions: [TrafficDirection: UInt64] = [:]
    public var fastRetransmissions: [TrafficDirection: UInt64] = [:]
    public var outOfOrder: [TrafficDirection: UInt64] = [:]
    public var zeroWindow: [TrafficDirection: UInt64] = [:]
    public var newFlows = 0
    public var evictedFlows = 0
    public var clients: [UInt64: ClientTraffic] = [:]
    public var clientsDropped = 0
    public var skipped: [SkipReason: UInt64] = [:]
    public var activeFlows = 0
}

/// One TCP stream, for `analyze` and the accuracy comparison with tshark.
public struct StreamRecord: Sendable {
    public var firstFrame: Int
    public var synFrame: Int?
    /// Wireshark's `tcp.analysis.initial_rtt`, nanoseconds.
    public var handshakeNanoseconds: Int64?
    public var packets: Int
    /// Rounded half up to microseconds, as the golden file records it.
    public var handshakeMicroseconds: Int64? { handshakeNanoseconds.map { ($0 + 500) / 1000 } }
}

/// File-wide totals, for `analyze`.
public struct TrafficTotals: Sendable {
    public var packets = 0
    public var bytes = 0
    public var capturedBytes = 0
    public var ipv4 = 0
    public var ipv6 = 0
    public var tcp = 0
    public var udp = 0
    public var icmp = 0
    public var other = 0
    public var tcpStreams = 0
    public var retransmissions = 0
    public var fastRetransmissions = 0
    public var outOfOrder = 0
    public var zeroWindow = 0
    public var skipped: [SkipReason: Int] = [:]
    public var rttSamples = 0
}

/// Header-only traffic analysis: volumes by direction and class, flows, TCP handshake and continuous
/// RTT (timestamp echo as pping does; SEQ/ACK under Karn's rule for flows without timestamps),
/// retransmissions, out-of-order segments, zero windows, per-client volumes. Pure: packets in, numbers
/// out; the caller supplies time (the packets' own timestamps). Bounded: a fixed flow table with
/// least-recently-seen eviction, fixed rings for outstanding RTT probes, capped per-interval lists.
public final class TrafficAnalyzer {
    public let limits: TrafficLimits
    /// RTT samples kept per interval; the rest counted in `rttDropped`.
    public static let maxRTTSamplesPerInterval = 4096
    /// Clients tracked per interval.
    public static let maxClientsPerInterval = 512
    /// Below this gap since the highest segment, an earlier sequence number is out of order, not a
    /// retransmission (Wireshark's default when no RTT is known: 3 ms).
    public static let outOfOrderMicroseconds: Int64 = 3_000
    /// A retransmission this soon after two duplicate ACKs is a fast retransmission (Wireshark: 20 ms).
    public static let fastRetransmitMicroseconds: Int64 = 20_000

    /// Per-direction TCP state, as Wireshark 4.0's `tcp_analyze_seq_flow_info_t` keeps it (0 means
    /// "unknown" for nextSeq, maxSeqToBeAcked and lastAck, as there): the counting rules are Wireshark's
    /// so the figures can be checked against tshark (scripts/pcap-oracle/README.md has them in full).
    struct Direction {
        var baseSeq: UInt32?
        var nextSeq: UInt32 = 0
        var nextSeqTime: Int64 = 0
        var maxSeqToBeAcked: UInt32 = 0
        var lastAck: UInt32 = 0
        var lastAckTime: Int64 = 0
        var dupAcks: UInt32 = 0
        var window: UInt32 = 0xFFFF_FFFF
        var lastFlags: UInt16 = 0
        // RTT probes (not Wireshark's): TSval first seen on a data segment, and SEQ/ACK ends.
        var timestamps = PendingRing()
        var sequenceEnds = PendingRing()
        var sawTimestamps = false
    }

    /// Fields in the order a packet touches them: the key and the flags share the first cache line, so a
    /// lookup that misses the cache costs one line, not two (the `live` flag at the end of the struct
    /// was a tenth of the analysis time in a profile).
    struct Flow {
        var key: FlowKey
        /// The slot holds a conversation (free slots hold a dead one).
        var live = true
        var isTCP: Bool
        var aIsLAN: Bool
        var bIsLAN: Bool
        var synFromA = false
        var stream: Int32 = -1
        var lastSeen: Int64
        /// MAC of the LAN endpoint, when known.
        var client: UInt64?
        // Handshake (per conversation, either direction, as Wireshark): the latest pure SYN, the first
        // SYN/ACK after it, and the first ACK without SYN after it.
        var lastSyn: Int64 = 0
        var synAckAfterSyn: Int64 = 0
        var firstRTT: Int64 = 0
        var dirs = (Direction(), Direction())

        static let empty = Flow(key: FlowKey(a: IPAddress(v4: 0), b: IPAddress(v4: 0), aPort: 0, bPort: 0, transport: 0),
                                live: false, isTCP: false, aIsLAN: false, bIsLAN: false, lastSeen: 0)
        /// Where each direction's state lies inside a flow, for in-place updates through a pointer.
        static let directionOffsets = (MemoryLayout<Flow>.offset(of: \Flow.dirs.0)!, MemoryLayout<Flow>.offset(of: \Flow.dirs.1)!)
    }

    /// The flow table: plain memory (a `Flow` holds no references), mapped whole and made resident (by
    /// the live agent before it captures; by `analyze` on another thread, its first huge page at start and
    /// the rest once the flows outgrow it), so memory is the same for ten thousand flows as for a million. A table of 2 MiB or more is
    /// aligned to 2 MiB and asked for transparent huge pages (`MADV_HUGEPAGE`, then `MADV_POPULATE_WRITE`):
    /// the default 16,384-slot table is then four pages the kernel fills in 0.6 ms, where 2,000 small
    /// pages took 2-3.6 ms (`MAP_POPULATE`), a tenth of `analyze` on a small file, and touching them one by
    /// one cost a fault each. Where the kernel gives no huge pages, it is the small pages, filled in one
    /// call. Slots are initialised as they are handed out. A packet's flow is updated in place through a
    /// pointer: a flow is a few hundred bytes, and copying it out and back per packet was the analyser's
    /// largest cost.
    final class FlowSlots {
        let base: UnsafeMutablePointer<Flow>
        let count: Int
        private let memory: HugePageMemory
        /// Slots below this were handed out (initialised); the rest were never touched.
        private(set) var used = 0
        /// A direct-mapped cache in front of the key index: consecutive packets mostly belong to a few
        /// busy conversations, and a hit, checked against the slot's own key, skips hashing the key.
        /// A miss costs one comparison; a crafted collision only makes it miss.
        static let recentCount = 1024
        let recent: UnsafeMutablePointer<Int32>
        /// Maps a table of `count` slots. With `resident` it is made resident now; otherwise the caller
        /// makes it resident later, from any thread, through ``residency``.
        init(count: Int, resident: Bool) {
            self.count = count
            precondition(_isPOD(Flow.self), "the flow table is plain memory")
            memory = HugePageMemory(bytes: count * MemoryLayout<Flow>.stride, populate: resident)
            base = memory.base.bindMemory(to: Flow.self, capacity: count)
            if resident { memory.populate(touching: true) }
            recent = .allocate(capacity: Self.recentCount)
            recent.initialize(repeating: -1, count: Self.recentCount)
        }

        /// Makes the table (or its first `flows` slots) resident from another thread while the owner uses
        /// it: never stores a byte.
        func populateConcurrently(flows: Int?) {
            memory.populate(touching: false, prefix: flows.map { $0 * MemoryLayout<Flow>.stride })
        }

        /// The table's memory, for making it resident from another thread (nil when it came from the
        /// allocator: already resident).
        var residency: FlowTableResidency? { memory.isMapped ? FlowTableResidency(slots: self) : nil }

        deinit {
            base.deinitialize(count: used)  // the mapping itself goes with `memory`
            recent.deallocate()
        }
        /// Hands out the next never-used slot, initialised to `flow`; nil when every slot was handed out.
        func takeFresh(_ flow: Flow) -> Int32? {
            guard used < count else { return nil }
            (base + used).initialize(to: flow)
            used += 1
            return Int32(used - 1)
        }
        @inline(__always) static func recentSlot(_ key: FlowKey) -> Int {
            let mixed = (key.a.low ^ key.b.low ^ key.a.high ^ key.b.high ^ UInt64(key.aPort) << 16 ^ UInt64(key.bPort) << 32)
                &* 0x9E37_79B9_7F4A_7C15
            return Int(truncatingIfNeeded: mixed >> 54)  // 10 bits: recentCount
        }
        /// The slot holding `key`, if the cache knows it.
        @inline(__always) func cached(_ key: FlowKey) -> Int32? {
            let slot = recent[Self.recentSlot(key)]
            guard slot >= 0, base[Int(slot)].live, base[Int(slot)].key == key else { return nil }
            return slot
        }
        @inline(__always) func remember(_ key: FlowKey, at slot: Int32) { recent[Self.recentSlot(key)] = slot }
        @inline(__always) subscript(_ i: Int) -> UnsafeMutablePointer<Flow> {
            precondition(i >= 0 && i < used)
            return base + i
        }
    }

    private let flows: FlowSlots
    /// Client entries recent packets counted into, by two bits of the MAC (a dictionary index stays valid
    /// until the next insertion, which clears them): a LAN conversation alternates between two clients.
    private var recentClients = InlineArray<4, ClientEntry?>(repeating: nil)
    private typealias ClientEntry = (mac: UInt64, index: Dictionary<UInt64, ClientTraffic>.Index)
    private var index: [FlowKey: Int32] = [:]

    /// Memory of one flow-table slot, for sizing `capture.max_flows` (the dictionary entry adds about 60 bytes).
    public static var bytesPerFlow: Int { MemoryLayout<Flow>.stride }
    /// CLOCK hand for eviction.
    private var hand = 0
    public private(set) var interval = TrafficInterval()
    public private(set) var totals = TrafficTotals()
    public private(set) var streams: [StreamRecord] = []
    public private(set) var streamsNotRecorded = 0
    /// Called with the frame number and the name of each TCP flag raised (retransmission, fast_retransmission,
    /// out_of_order, zero_window): `analyze --trace-tcp` compares them frame by frame with tshark.
    public var tcpTrace: ((Int, String) -> Void)?
    private var currentFrame = 0

    /// With `residentNow` false the flow table is mapped but not yet resident: the caller hands
    /// ``flowTableResidency`` to another thread, which makes it resident while packets are analysed
    /// (`analyze` of a small file would otherwise wait a millisecond for 8 MB to be cleared first).
    public init(limits: TrafficLimits = TrafficLimits(), residentNow: Bool = true) {
        self.limits = limits
        // The whole table is allocated at start and bounded: a SYN flood of a million flows costs what
        // `maxFlows` flows do (see `bytesPerFlow`).
        flows = FlowSlots(count: limits.maxFlows, resident: residentNow)
        // The index grows with the conversations (to `maxFlows` at most): reserved whole, its 1.4 MB for
        // 16,384 flows was touched a page at a time by the first thousand inserts, a fault each.
        index.reserveCapacity(Swift.min(limits.maxFlows, 1024))
    }

    public var activeFlows: Int { index.count }

    /// Flow-table slots handed out so far (they are never handed back: an evicted flow's slot is reused).
    public var flowSlotsInUse: Int { flows.used }

    /// The flow table's memory, to be made resident from another thread; nil when it already is. The
    /// analyser must outlive the call to ``FlowTableResidency/populate(flows:)``.
    public var flowTableResidency: FlowTableResidency? { flows.residency }

    /// Hands over the interval's figures and starts a new interval.
    public func takeInterval() -> TrafficInterval {
        for i in 0..<4 { recentClients[i] = nil }
        var out = interval
        out.activeFlows = index.count
        interval = TrafficInterval()
        return out
    }

    /// Counts a packet that was skipped before analysis (unsupported link type, truncated header …).
    public func skip(_ meta: PacketMeta, reason: SkipReason) {
        countFrame(meta)
        totals.skipped[reason, default: 0] += 1
        interval.skipped[reason, default: 0] += 1
    }

    /// Link types whose records carry a pseudo-header that is not part of the frame on the wire
    /// (SunATM: 4 bytes), so the byte total is the frame's as Wireshark counts it.
    public var pseudoHeaderBytes = 0

    private func countFrame(_ meta: PacketMeta) {
        totals.packets += 1
        totals.bytes += Swift.max(0, meta.originalLength - pseudoHeaderBytes)
        totals.capturedBytes += meta.capturedLength
    }

    public func process(_ meta: PacketMeta, _ h: PacketHeaders) {
        withUnsafePointer(to: h) { process(meta, $0) }
    }

    /// ``process(_:_:)`` for headers read in place (the reader's batch in `analyze`): a packet's headers
    /// are ~130 bytes, and copying them per packet showed in profiles.
    public func process(_ meta: PacketMeta, _ hp: UnsafePointer<PacketHeaders>) {
        countFrame(meta)
        let t = meta.timestampNanoseconds
        if hp.pointee.isIPv6 { totals.ipv6 += 1 } else { totals.ipv4 += 1 }
        switch hp.pointee.transport {
        case .tcp: if hp.pointee.tcp != nil || hp.pointee.isFragment { totals.tcp += 1 } else { totals.other += 1 }
        case .udp: totals.udp += 1
        case .icmp: totals.icmp += 1
        case .other: totals.other += 1
        }

        let srcLAN = hp.pointee.source.isPrivate, dstLAN = hp.pointee.destination.isPrivate || hp.pointee.destination.isMulticastOrBroadcast
        let direction: TrafficDirection = srcLAN ? (dstLAN ? .lan : .upstream) : (dstLAN ? .downstream : .wan)
        let classSlot = TrafficInterval.slot(direction, hp.pointee.transport, hp.pointee.isIPv6)
        interval.classPackets[classSlot] &+= 1
        interval.classBytes[classSlot] &+= UInt64(meta.originalLength)

        // The client is the LAN endpoint's MAC: the sender going up or within the LAN, the receiver coming down.
        let client: UInt64? = direction == .downstream ? hp.pointee.destinationMAC : (direction == .wan ? nil : hp.pointee.sourceMAC)
        if let client {
            // Consecutive packets mostly belong to one client: its entry is remembered until the next insertion.
            let cacheSlot = Int(truncatingIfNeeded: (client ^ client >> 8 ^ client >> 16) & 3)
            let cached = recentClients[cacheSlot]
            let known = cached?.mac == client ? cached!.index : interval.clients.index(forKey: client)
            if let i = known {
                recentClients[cacheSlot] = (client, i)
                interval.clients.values[i].packets &+= 1
                if direction == .downstream { interval.clients.values[i].downstreamBytes &+= UInt64(meta.originalLength) }
                else { interval.clients.values[i].upstreamBytes &+= UInt64(meta.originalLength) }
            } else if interval.clients.count < Self.maxClientsPerInterval {
                var c = ClientTraffic()
                c.packets = 1
                if direction == .downstream { c.downstreamBytes = UInt64(meta.originalLength) } else { c.upstreamBytes = UInt64(meta.originalLength) }
                interval.clients[client] = c
                for i in 0..<4 { recentClients[i] = nil }
            } else {
                interval.clientsDropped += 1
            }
        }

        guard !hp.pointee.isFragment else { return }
        if let tcp = hp.pointee.tcp, tcp.payloadLength < 0 { return }  // no readable segment length: counted, not a stream
        let (key, forward) = FlowKey.of(hp)
        let slot = lookupOrCreate(key, t: t, isTCP: hp.pointee.tcp != nil, meta: meta, tcp: hp.pointee.isFirstFragment ? nil : hp.pointee.tcp, forward: forward)
        let flow = flows[Int(slot)]
        flow.pointee.lastSeen = t
        if flow.pointee.client == nil, let client { flow.pointee.client = client }
        if let tcp = hp.pointee.tcp {
            let stream = flow.pointee.stream
            if stream >= 0 { streams[Int(stream)].packets += 1 }
            // The first fragment of a datagram belongs to its stream but is not analysed.
            if !hp.pointee.isFirstFragment {
                analyseTCP(flow, tcp, forward: forward, t: t, direction: direction, frame: meta.frameNumber)
            }
        }
    }

    // MARK: Flow table

    private func lookupOrCreate(_ key: FlowKey, t: Int64, isTCP: Bool, meta: PacketMeta, tcp: TCPHeader?, forward: Bool) -> Int32 {
        if let slot = flows.cached(key) ?? index[key] {
            flows.remember(key, at: slot)
            let flow = flows[Int(slot)]
            // A pure SYN whose sequence number differs from its direction's known base starts a new stream
            // (ports reused), as Wireshark splits conversations.
            if let tcp, tcp.syn, !tcp.ack, let base = forward ? flow.pointee.dirs.0.baseSeq : flow.pointee.dirs.1.baseSeq,
               base != tcp.sequence {
                flow.pointee = newFlow(key, t: t, isTCP: true, frame: meta.frameNumber)
                return slot
            }
            let idle = Int64(flow.pointee.isTCP ? limits.idleSecondsTCP : limits.idleSecondsDatagram) &* 1_000_000_000
            if t &- flow.pointee.lastSeen <= idle { return slot }
            flow.pointee = newFlow(key, t: t, isTCP: isTCP, frame: meta.frameNumber)
            return slot
        }
        let flow = newFlow(key, t: t, isTCP: isTCP, frame: meta.frameNumber)
        let slot: Int32
        if let fresh = flows.takeFresh(flow) {
            slot = fresh
        } else {
            slot = evictOne(now: t)
            flows[Int(slot)].pointee = flow
        }
        index[key] = slot
        flows.remember(key, at: slot)
        return slot
    }

    private func newFlow(_ key: FlowKey, t: Int64, isTCP: Bool, frame: Int) -> Flow {
        interval.newFlows += 1
        var flow = Flow(key: key, isTCP: isTCP, aIsLAN: key.a.isPrivate, bIsLAN: key.b.isPrivate, lastSeen: t)
        if isTCP {
            totals.tcpStreams += 1
            if streams.count < limits.maxStreamRecords {
                flow.stream = Int32(streams.count)
                streams.append(StreamRecord(firstFrame: frame, synFrame: nil, handshakeNanoseconds: nil, packets: 0))
            } else if limits.maxStreamRecords > 0 {
                streamsNotRecorded += 1
            }
        }
        return flow
    }

    /// CLOCK sweep: the first flow idle past its timeout goes; if none within a bounded sweep, the least
    /// recently seen of the flows looked at goes. Either way the eviction is counted.
    private func evictOne(now: Int64) -> Int32 {
        var oldest: (slot: Int, seen: Int64)?
        for _ in 0..<Swift.min(64, flows.used) {
            let i = hand
            hand = (hand + 1) % flows.used
            let f = flows[i]
            guard f.pointee.live else { return Int32(i) }
            let seen = f.pointee.lastSeen
            let idle = Int64(f.pointee.isTCP ? limits.idleSecondsTCP : limits.idleSecondsDatagram) &* 1_000_000_000
            if now &- seen > idle { oldest = (i, seen); break }
            if oldest == nil || seen < oldest!.seen { oldest = (i, seen) }
        }
        let victim = oldest!.slot
        if flows[victim].pointee.live { index.removeValue(forKey: flows[victim].pointee.key) }
        flows[victim].pointee.live = false
        interval.evictedFlows += 1
        return Int32(victim)
    }

    // MARK: TCP

    private static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, ackFlag: UInt8 = 0x10
    // Wireshark's TCP_A_* bits, for the per-direction "last segment flags".
    private static let aKeepAlive: UInt16 = 0x0008, aZeroWindowProbe: UInt16 = 0x0040

    private func analyseTCP(_ flow: UnsafeMutablePointer<Flow>, _ tcp: TCPHeader, forward fromA: Bool, t: Int64, direction: TrafficDirection, frame: Int) {
        currentFrame = frame
        // Both directions' state, updated in place.
        let raw = UnsafeMutableRawPointer(flow)
        let fwd = (raw + (fromA ? Flow.directionOffsets.0 : Flow.directionOffsets.1)).assumingMemoryBound(to: Direction.self)
        let rev = (raw + (fromA ? Flow.directionOffsets.1 : Flow.directionOffsets.0)).assumingMemoryBound(to: Direction.self)
        let flags = tcp.flags
        let seq = tcp.sequence, ack = tcp.acknowledgement
        let seglen = UInt32(tcp.payloadLength)
        let window = UInt32(tcp.window)
        let synFinRst = flags & (Self.syn | Self.fin | Self.rst)

        // Base sequence numbers (for the reused-ports rule).
        if fwd.pointee.baseSeq == nil { fwd.pointee.baseSeq = flags & Self.syn != 0 ? seq : seq &- 1 }
        if rev.pointee.baseSeq == nil, flags & Self.ackFlag != 0 { rev.pointee.baseSeq = ack &- 1 }

        var ta: UInt16 = 0
        var zeroWindowProbe = false
        var keepAlive = false
        if seglen == 1 && seq == fwd.pointee.nextSeq && rev.pointee.window == 0 {
            zeroWindowProbe = true
            ta |= Self.aZeroWindowProbe
        } else {
            if window == 0 && synFinRst == 0 {
                tcpTrace?(frame, "zero_window")
                totals.zeroWindow += 1
                interval.zeroWindow[direction, default: 0] += 1
            }
            if seglen <= 1 && seq == fwd.pointee.nextSeq &- 1 && synFinRst == 0 {
                keepAlive = true
                ta |= Self.aKeepAlive
            }
            let same = seglen == 0 && seq == fwd.pointee.nextSeq && ack == fwd.pointee.lastAck && synFinRst == 0
            var skipDup = false
            if same && window != 0 && window == fwd.pointee.window && rev.pointee.lastFlags & Self.aKeepAlive != 0 { skipDup = true }
            else if same && window == 0 && window == fwd.pointee.window && rev.pointee.lastFlags & Self.aZeroWindowProbe != 0 { skipDup = true }
            if !skipDup && same && window != 0 && window == fwd.pointee.window {
                fwd.pointee.dupAcks = fwd.pointee.dupAcks == 0xFFFF_FFFF ? 1 : fwd.pointee.dupAcks &+ 1
            }
        }
        if ack != fwd.pointee.lastAck { fwd.pointee.dupAcks = 0 }
        // An ACK of data never seen: Wireshark marks the reverse duplicate-ACK count as -1 (unsigned).
        if rev.pointee.maxSeqToBeAcked != 0 && seqGT(ack, rev.pointee.maxSeqToBeAcked) && flags & Self.ackFlag != 0 {
            if seqLT(rev.pointee.maxSeqToBeAcked, rev.pointee.nextSeq) { rev.pointee.maxSeqToBeAcked = rev.pointee.nextSeq } else { rev.pointee.dupAcks = 0xFFFF_FFFF }
        }

        var retransmitted = false
        if seglen > 0 || flags & (Self.syn | Self.fin) != 0 {
            var notAdvanced = fwd.pointee.nextSeq != 0 && seqLT(seq, fwd.pointee.nextSeq)
            if !keepAlive {
                if seglen > 1 && fwd.pointee.nextSeq &- 1 == seq { notAdvanced = false }
                if seglen > 0 && rev.pointee.lastAck != 0 && !seqGT(seq &+ seglen, rev.pointee.lastAck) {
                    countRetransmission(direction, fast: false)  // spurious: every byte was already ACKed
                    retransmitted = true
                } else if notAdvanced && rev.pointee.dupAcks >= 2 && rev.pointee.lastAck == seq && UInt64(bitPattern: t &- rev.pointee.lastAckTime) < 20_000_000 {
                    countRetransmission(direction, fast: true)
                    retransmitted = true
                } else {
                    let threshold: UInt64 = flow.pointee.firstRTT == 0 ? 3_000_000 : UInt64(bitPattern: flow.pointee.firstRTT)
                    let synFin: UInt32 = flags & (Self.syn | Self.fin) != 0 ? 1 : 0
                    if notAdvanced && UInt64(bitPattern: t &- fwd.pointee.nextSeqTime) < threshold && fwd.pointee.nextSeq != seq &+ seglen &+ synFin {
                        tcpTrace?(frame, "out_of_order")
                        totals.outOfOrder += 1
                        interval.outOfOrder[direction, default: 0] += 1
                        retransmitted = true
                    } else if notAdvanced {
                        countRetransmission(direction, fast: false)
                        retransmitted = true
                    }
                }
            }
        }
        var nextSeq = seq &+ seglen
        if (seglen > 0 || flags & (Self.syn | Self.fin) != 0) && flags & (Self.syn | Self.fin) != 0 { nextSeq = nextSeq &+ 1 }
        if !zeroWindowProbe {
            if seqGT(nextSeq, fwd.pointee.nextSeq) || fwd.pointee.nextSeq == 0 {
                fwd.pointee.nextSeq = nextSeq
                fwd.pointee.nextSeqTime = t
                // SEQ/ACK RTT probe (Karn: never for data sent twice), for flows without timestamps.
                if seglen > 0, !retransmitted, !fwd.pointee.sawTimestamps, tcp.timestampValue == nil { _ = fwd.pointee.sequenceEnds.insert(nextSeq, at: t) }
            }
            if seq == fwd.pointee.maxSeqToBeAcked || fwd.pointee.maxSeqToBeAcked == 0 { fwd.pointee.maxSeqToBeAcked = fwd.pointee.nextSeq }
        }
        if retransmitted { fwd.pointee.sequenceEnds.invalidate(after: seq) }
        fwd.pointee.window = window
        fwd.pointee.lastAck = ack
        fwd.pointee.lastAckTime = t
        fwd.pointee.lastFlags = ta

        // Continuous RTT (pping): a TSval is timed once, on a segment that carries data or SYN/FIN (pure
        // ACKs are never timed); the other side's first echo of it closes the sample. The leg is the
        // echoing side's.
        let echoerLAN = fromA ? flow.pointee.aIsLAN : flow.pointee.bIsLAN
        if let tsval = tcp.timestampValue {
            fwd.pointee.sawTimestamps = true
            if seglen > 0 || flags & (Self.syn | Self.fin) != 0, !retransmitted, !fwd.pointee.timestamps.contains(tsval) {
                _ = fwd.pointee.timestamps.insert(tsval, at: t)
            }
        }
        if flags & Self.ackFlag != 0 {
            if let tsecr = tcp.timestampEcho, tsecr != 0, let sent = rev.pointee.timestamps.take(exactly: tsecr) {
                addRTT(RTTSample(leg: echoerLAN ? .lan : .wan, method: .timestamps, microseconds: (t - sent) / 1000, client: flow.pointee.client))
            } else if tcp.timestampEcho == nil, !rev.pointee.sawTimestamps, let sent = rev.pointee.sequenceEnds.takeAcknowledged(by: ack) {
                addRTT(RTTSample(leg: echoerLAN ? .lan : .wan, method: .seqack, microseconds: (t - sent) / 1000, client: flow.pointee.client))
            }
        }

        // Handshake RTT (Wireshark's tcp.analysis.initial_rtt): the latest pure SYN to the first frame
        // with ACK and without SYN after it, in either direction. The SYN/ACK in between splits it into
        // the leg towards the responder and the leg towards the initiator.
        if flags & Self.syn != 0 && flags & Self.ackFlag == 0 {
            if t != 0 {
                flow.pointee.lastSyn = t
                flow.pointee.synFromA = fromA
                flow.pointee.synAckAfterSyn = 0
                if flow.pointee.stream >= 0, streams[Int(flow.pointee.stream)].synFrame == nil { streams[Int(flow.pointee.stream)].synFrame = frame }
            }
        } else if flags & Self.syn != 0 {
            if flow.pointee.lastSyn != 0, flow.pointee.synAckAfterSyn == 0 { flow.pointee.synAckAfterSyn = t }
        } else if flags & Self.ackFlag != 0, flow.pointee.lastSyn != 0, flow.pointee.firstRTT == 0 {
            let rtt = t - flow.pointee.lastSyn
            if rtt != 0 {
                flow.pointee.firstRTT = rtt
                if flow.pointee.stream >= 0 { streams[Int(flow.pointee.stream)].handshakeNanoseconds = rtt }
                if flow.pointee.synAckAfterSyn != 0 {
                    let initiatorLAN = flow.pointee.synFromA ? flow.pointee.aIsLAN : flow.pointee.bIsLAN
                    let responderLAN = flow.pointee.synFromA ? flow.pointee.bIsLAN : flow.pointee.aIsLAN
                    addRTT(RTTSample(leg: responderLAN ? .lan : .wan, method: .handshake,
                                     microseconds: (flow.pointee.synAckAfterSyn - flow.pointee.lastSyn) / 1000, client: flow.pointee.client))
                    addRTT(RTTSample(leg: initiatorLAN ? .lan : .wan, method: .handshake,
                                     microseconds: (t - flow.pointee.synAckAfterSyn) / 1000, client: flow.pointee.client))
                }
            }
        }
    }

    private func countRetransmission(_ direction: TrafficDirection, fast: Bool) {
        tcpTrace?(currentFrame, fast ? "fast_retransmission" : "retransmission")
        totals.retransmissions += 1
        interval.retransmissions[direction, default: 0] += 1
        if fast {
            totals.fastRetransmissions += 1
            interval.fastRetransmissions[direction, default: 0] += 1
        }
    }

    private func addRTT(_ s: RTTSample) {
        guard s.microseconds >= 0 else { return }
        totals.rttSamples += 1
        if interval.rtt.count < Self.maxRTTSamplesPerInterval { interval.rtt.append(s) } else { interval.rttDropped += 1 }
    }
}
