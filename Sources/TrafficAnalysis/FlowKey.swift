import PacketCapture

/// A conversation: both endpoints and the transport protocol, ordered so both directions share one key.
struct FlowKey: Hashable {
    var a: IPAddress
    var b: IPAddress
    var aPort: UInt16
    var bPort: UInt16
    var transport: UInt8

    /// The key and whether the packet travels from `a` to `b`.
    @inline(__always) static func of(_ h: UnsafePointer<PacketHeaders>) -> (FlowKey, forward: Bool) {
        let transport = h.pointee.transport
        let t: UInt8 = transport == .tcp ? 6 : transport == .udp ? 17 : transport == .icmp ? 1 : 0
        let source = h.pointee.source, destination = h.pointee.destination
        let sourcePort = h.pointee.sourcePort, destinationPort = h.pointee.destinationPort
        if (source, sourcePort) <= (destination, destinationPort) {
            return (FlowKey(a: source, b: destination, aPort: sourcePort, bPort: destinationPort, transport: t), true)
        }
        return (FlowKey(a: destination, b: source, aPort: destinationPort, bPort: sourcePort, transport: t), false)
    }

    static func of(_ h: PacketHeaders) -> (FlowKey, forward: Bool) {
        withUnsafePointer(to: h) { of($0) }
    }

    /// Hashed once per packet: the fields packed into as few words as they fit (two for IPv4, five for
    /// IPv6) instead of one `combine` per field. Still the standard library's seeded SipHash, so a flood
    /// of crafted addresses and ports cannot aim at one bucket.
    func hash(into hasher: inout Hasher) {
        let tail = UInt64(aPort) << 48 | UInt64(bPort) << 32 | UInt64(transport) << 8
            | (a.isV6 ? 2 : 0) | (b.isV6 ? 1 : 0)
        if !a.isV6 && !b.isV6 {
            hasher.combine(a.low << 32 | b.low)
        } else {
            hasher.combine(a.high)
            hasher.combine(a.low)
            hasher.combine(b.high)
            hasher.combine(b.low)
        }
        hasher.combine(tail)
    }
}

/// Sequence-number comparison modulo 2^32 (RFC 1982).
@inline(__always) func seqLT(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) < 0 }
@inline(__always) func seqGT(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
@inline(__always) func seqGE(_ a: UInt32, _ b: UInt32) -> Bool { !seqLT(a, b) }

/// A small fixed-capacity ring of (key, time) pairs: outstanding TCP timestamps or sequence ends waiting
/// for their echo or acknowledgement. When full, the oldest entry is overwritten and counted.
struct PendingRing {
    /// Four outstanding probes per direction: enough for continuous RTT (one sample per round trip is
    /// plenty), small enough that a full flow table stays a few megabytes.
    static let capacity = 4
    private(set) var keys: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var times: (Int64, Int64, Int64, Int64) = (0, 0, 0, 0)
    private var used: UInt8 = 0  // bit i: slot i holds an entry
    private var nextSlot = 0

    private func key(_ i: Int) -> UInt32 { withUnsafeBytes(of: keys) { $0.load(fromByteOffset: i * 4, as: UInt32.self) } }
    private func time(_ i: Int) -> Int64 { withUnsafeBytes(of: times) { $0.load(fromByteOffset: i * 8, as: Int64.self) } }
    private mutating func set(_ i: Int, _ k: UInt32, _ t: Int64) {
        withUnsafeMutableBytes(of: &keys) { $0.storeBytes(of: k, toByteOffset: i * 4, as: UInt32.self) }
        withUnsafeMutableBytes(of: &times) { $0.storeBytes(of: t, toByteOffset: i * 8, as: Int64.self) }
    }

    var isEmpty: Bool { used == 0 }

    func contains(_ k: UInt32) -> Bool {
        for i in 0..<Self.capacity where used & (1 << i) != 0 && key(i) == k { return true }
        return false
    }

    /// Adds an entry; returns true when an older entry had to be overwritten.
    mutating func insert(_ k: UInt32, at t: Int64) -> Bool {
        let i = nextSlot
        let overwrote = used & (1 << i) != 0
        set(i, k, t)
        used |= 1 << i
        nextSlot = (nextSlot + 1) % Self.capacity
        return overwrote
    }

    /// Removes and returns the time of the entry with key `k` (timestamp echo matching).
    mutating func take(exactly k: UInt32) -> Int64? {
        for i in 0..<Self.capacity where used & (1 << i) != 0 && key(i) == k {
            used &= ~(1 << i)
            return time(i)
        }
        return nil
    }

    /// Sequence-ACK matching: among entries with `end ≤ ack` (mod 2^32), returns the time of the one with
    /// the highest end and removes all of them.
    mutating func takeAcknowledged(by ack: UInt32) -> Int64? {
        var best: (UInt32, Int64)?
        for i in 0..<Self.capacity where used & (1 << i) != 0 && seqGE(ack, key(i)) {
            if best == nil || seqGT(key(i), best!.0) { best = (key(i), time(i)) }
            used &= ~(1 << i)
        }
        return best?.1
    }

    /// Karn's rule: a retransmission makes every outstanding sample beyond `seq` ambiguous.
    mutating func invalidate(after seq: UInt32) {
        for i in 0..<Self.capacity where used & (1 << i) != 0 && seqGT(key(i), seq) { used &= ~(1 << i) }
    }

    mutating func removeAll() { used = 0 }
}
