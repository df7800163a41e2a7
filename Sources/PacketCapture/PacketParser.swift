/// An IPv4 or IPv6 address as two 64-bit halves (IPv4 in the low 32 bits of `low`): cheap to hash and
/// compare per packet. Raw addresses live only inside the analyser, on the device; nothing derived from
/// them leaves except the LAN/WAN direction and pseudonymised client identities.
public struct IPAddress: Hashable, Sendable, Comparable {
    public var high: UInt64
    public var low: UInt64
    public var isV6: Bool

    public static func < (a: IPAddress, b: IPAddress) -> Bool { (a.high, a.low, a.isV6 ? 1 : 0) < (b.high, b.low, b.isV6 ? 1 : 0) }

    public init(v4: UInt32) {
        high = 0
        low = UInt64(v4)
        isV6 = false
    }

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
        isV6 = true
    }

    /// RFC 1918, loopback, link-local (v4 and v6), CGNAT 100.64/10 is not LAN (it is the ISP's side),
    /// and IPv6 unique-local fc00::/7: addresses that belong to the home network.
    public var isPrivate: Bool {
        if !isV6 {
            let a = UInt32(truncatingIfNeeded: low)
            return a >> 24 == 10 || a >> 20 == 0xAC1 || a >> 16 == 0xC0A8 || a >> 24 == 127 || a >> 16 == 0xA9FE
        }
        let top16 = high >> 48
        return top16 & 0xFE00 == 0xFC00 || top16 & 0xFFC0 == 0xFE80 || (high == 0 && low == 1)
    }

    public var isMulticastOrBroadcast: Bool {
        if !isV6 {
            let a = UInt32(truncatingIfNeeded: low)
            return a >> 28 == 0xE || a == 0xFFFF_FFFF
        }
        return high >> 56 == 0xFF
    }
}

public enum TransportProtocol: Sendable, Equatable {
    case tcp, udp, icmp, other

    /// The `transport` label value: the case's name, without the runtime's reflection (interpolating the
    /// case looked up three protocol conformances, 0.4 ms of a short `analyze`).
    public var label: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .icmp: "icmp"
        case .other: "other"
        }
    }
}

/// The TCP header fields the analyser uses. Options are read from the claimed TCP header only.
public struct TCPHeader: Sendable {
    public var sequence: UInt32
    public var acknowledgement: UInt32
    /// FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80.
    public var flags: UInt8
    public var window: UInt16
    public var windowScale: UInt8?
    public var timestampValue: UInt32?
    public var timestampEcho: UInt32?
    /// Payload bytes by the IP length fields (never read); -1 when the IP length is shorter than the
    /// TCP header, so no segment length is known.
    public var payloadLength: Int

    public var syn: Bool { flags & 0x02 != 0 }
    public var ack: Bool { flags & 0x10 != 0 }
    public var fin: Bool { flags & 0x01 != 0 }
    public var rst: Bool { flags & 0x04 != 0 }
}

/// Everything the analyser learns from one packet's headers.
public struct PacketHeaders: Sendable {
    public var sourceMAC: UInt64?
    public var destinationMAC: UInt64?
    /// From a Linux cooked header: the kernel said the packet was sent by this host.
    public var outgoing: Bool?
    public var source = IPAddress(v4: 0)
    public var destination = IPAddress(v4: 0)
    public var isIPv6 = false
    public var transport: TransportProtocol = .other
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var tcp: TCPHeader?
    /// A non-first IP fragment carries no transport header.
    public var isFragment = false
    /// The headers are a tunnel's inner ones (IP-in-IP, GRE); tunnels are walked once.
    public var insideTunnel = false
    /// The first fragment of a fragmented datagram: its TCP header is read, but it is not analysed
    /// (tshark with IP reassembly off does the same).
    public var isFirstFragment = false

    public init() {}
}

/// Why a packet was not analysed beyond its length. Every skip is counted by reason.
public enum SkipReason: String, Error, Sendable, CaseIterable {
    case unsupportedLinkType = "unsupported_link_type"
    case notIP = "not_ip"
    case truncatedHeader = "truncated_header"
    case malformedHeader = "malformed_header"
    case headersTooLong = "headers_too_long"
}

/// Parses link, network and transport headers through a ``HeaderView``; stops at the transport header.
public enum PacketParser {
    /// Link types Meetpunt understands (libpcap DLT values).
    public static let supportedLinkTypes: Set<Int32> = Set((Int32(0)...Int32(300)).filter { supports(linkType: $0) })

    /// ``supportedLinkTypes`` as a switch: asked once per packet, so no hashing.
    @inline(__always) public static func supports(linkType: Int32) -> Bool {
        switch linkType {
        case 0, 1, 10, 12, 14, 101, 108, 113, 228, 229, 239, 276: true
        default: false
        }
    }

    public static func linkTypeName(_ dlt: Int32) -> String {
        switch dlt {
        case 0: "NULL"
        case 1: "EN10MB"
        case 10: "FDDI"
        case 12, 14, 101: "RAW"
        case 108: "LOOP"
        case 113: "LINUX_SLL"
        case 228: "IPV4"
        case 229: "IPV6"
        case 239: "NFLOG"
        case 276: "LINUX_SLL2"
        default: "DLT_\(dlt)"
        }
    }

    public static func parse(linkType: Int32, view: inout HeaderView, originalLength: Int) -> Result<PacketHeaders, SkipReason> {
        var h = PacketHeaders()
        if let reason = parse(linkType: linkType, view: &view, originalLength: originalLength, into: &h) { return .failure(reason) }
        return .success(h)
    }

    /// Parses into `h` (reset first) and returns why the packet was skipped, or nil when its headers
    /// were read. In place: the per-packet path copies no header struct.
    public static func parse(linkType: Int32, view: inout HeaderView, originalLength: Int, into h: inout PacketHeaders) -> SkipReason? {
        h = PacketHeaders()
        let etherType: UInt16
        // What the link layer says the packet is: a PPPoE or 802.3 length can end it before the frame
        // does (Ethernet padding), and the IP length is then checked against that, as Wireshark does.
        var reportedLength = originalLength
        switch linkType {
        case 1, 10:
            if linkType == 10 {
                // FDDI: frame control, destination, source; then 802.2 LLC/SNAP.
                guard let fddi = view.take(13) else { return .truncatedHeader }
                h.destinationMAC = mac(fddi, 1)
                h.sourceMAC = mac(fddi, 7)
                guard let type = snapType(&view) else { return .notIP }
                etherType = type
                break
            }
            guard let eth = view.take(14) else { return .truncatedHeader }
            h.destinationMAC = mac(eth, 0)
            h.sourceMAC = mac(eth, 6)
            var type = eth.u16(12)
            var layers = 0
            // 802.1Q / 802.1ad / QinQ tags, 802.1ah PBB, 802.3 + LLC/SNAP, MPLS: walked to the IP header,
            // a bounded number of layers deep.
            walk: while true {
                layers += 1
                guard layers <= 6 else { return .headersTooLong }
                if type == 0x8100 || type == 0x88A8 || type == 0x9100 {
                    guard let tag = view.take(4) else { return .truncatedHeader }
                    type = tag.u16(2)
                } else if type == 0x88E7 {  // PBB I-tag, then the customer's Ethernet header
                    guard view.take(4) != nil, let inner = view.take(14) else { return .truncatedHeader }
                    h.destinationMAC = mac(inner, 0)
                    h.sourceMAC = mac(inner, 6)
                    type = inner.u16(12)
                } else if type < 0x0600 {  // an 802.3 length: LLC/SNAP carries the EtherType
                    reportedLength = Swift.min(reportedLength, view.offset + Int(type))
                    guard let snap = snapType(&view) else { return .notIP }
                    type = snap
                } else if type == 0x8847 || type == 0x8848 {  // MPLS: labels to the bottom of the stack
                    var bottom = false
                    var labels = 0
                    while !bottom {
                        labels += 1
                        guard labels <= 4 else { return .headersTooLong }
                        guard let label = view.take(4) else { return .truncatedHeader }
                        bottom = label.u8(2) & 1 != 0
                    }
                    guard let version = view.peekVersion() else { return .truncatedHeader }
                    type = version == 4 ? 0x0800 : version == 6 ? 0x86DD : 0
                } else {
                    break walk
                }
            }
            if type == 0x8864 {  // PPPoE session: 6 bytes, then the PPP protocol
                guard let pppoe = view.take(8) else { return .truncatedHeader }
                reportedLength = Swift.min(reportedLength, view.offset + Int(pppoe.u16(4)) - 2)
                switch pppoe.u16(6) {
                case 0x0021: type = 0x0800
                case 0x0057: type = 0x86DD
                default: return .notIP
                }
            }
            etherType = type
        case 113:
            guard let sll = view.take(16) else { return .truncatedHeader }
            h.outgoing = sll.u16(0) == 4
            if sll.u16(4) == 6 { h.sourceMAC = mac(sll, 6) }
            etherType = sll.u16(14)
        case 276:
            guard let sll = view.take(20) else { return .truncatedHeader }
            h.outgoing = sll.u8(10) == 4
            if sll.u8(11) == 6 { h.sourceMAC = mac(sll, 12) }
            etherType = sll.u16(0)
        case 0, 108:
            guard let family = view.take(4) else { return .truncatedHeader }
            let af = linkType == 0 ? family.u32le(0) : family.u32(0)
            switch af {
            case 2: etherType = 0x0800
            case 10, 24, 28, 30: etherType = 0x86DD
            default: return .notIP
            }
        case 239:
            // NFLOG: a 4-byte header, then type-length-value attributes (host byte order, 4-byte aligned)
            // up to the packet attribute (NFULA_PAYLOAD = 9). Attributes before it are stepped over unread.
            guard let nflog = view.take(4) else { return .truncatedHeader }
            let family = nflog.u8(0)
            var found = false
            for _ in 0..<16 {
                guard let tlv = view.take(4) else { return .truncatedHeader }
                let length = Int(tlv.u16le(0)), type = tlv.u16le(2)
                guard length >= 4 else { return .malformedHeader }
                if type == 9 { found = true; break }
                guard view.skip((length + 3) & ~3 - 4) else { return .headersTooLong }
            }
            guard found else { return .headersTooLong }
            etherType = family == 2 ? 0x0800 : family == 10 ? 0x86DD : 0
        case 12, 14, 101, 228, 229:
            guard let first = view.peekVersion() else { return .truncatedHeader }
            etherType = first == 4 ? 0x0800 : first == 6 ? 0x86DD : 0
        default:
            return .unsupportedLinkType
        }
        switch etherType {
        case 0x0800: return parseIPv4(&view, into: &h, originalLength: reportedLength)
        case 0x86DD: return parseIPv6(&view, into: &h, originalLength: reportedLength)
        default: return .notIP
        }
    }

    /// 802.2 LLC with a SNAP header (AA AA 03, OUI, type): the EtherType, or nil for other LLC.
    static func snapType(_ view: inout HeaderView) -> UInt16? {
        guard let llc = view.take(8), llc.u8(0) == 0xAA, llc.u8(1) == 0xAA, llc.u8(2) == 0x03 else { return nil }
        return llc.u16(6)
    }

    @inline(__always) static func mac(_ b: HeaderBytes, _ at: Int) -> UInt64 {
        UInt64(b.u16(at)) << 32 | UInt64(b.u32(at + 2))
    }

    static func parseIPv4(_ view: inout HeaderView, into h: inout PacketHeaders, originalLength: Int) -> SkipReason? {
        let start = view.offset
        guard let fixed = view.take(20) else { return .truncatedHeader }
        guard fixed.u8(0) >> 4 == 4 else { return .malformedHeader }
        let headerLength = Int(fixed.u8(0) & 0x0F) * 4
        guard headerLength >= 20 else { return .malformedHeader }
        if headerLength > 20 { guard view.take(headerLength - 20) != nil else { return .truncatedHeader } }
        h.source = IPAddress(v4: fixed.u32(12))
        h.destination = IPAddress(v4: fixed.u32(16))
        let totalLength = Int(fixed.u16(2))
        // Segmentation offload shows total length 0, and a total length beyond the frame cannot be
        // trusted: both fall back to the frame's original length (as Wireshark does).
        let frameRemaining = originalLength - start
        let ipLength = totalLength == 0 || totalLength > frameRemaining ? frameRemaining : totalLength
        let fragment = fixed.u16(6)
        h.isFragment = fragment & 0x1FFF != 0
        h.isFirstFragment = !h.isFragment && fragment & 0x2000 != 0
        return parseTransport(&view, protocol: fixed.u8(9), payload: ipLength - headerLength, into: &h)
    }

    static func parseIPv6(_ view: inout HeaderView, into h: inout PacketHeaders, originalLength: Int) -> SkipReason? {
        h.isIPv6 = true
        guard let fixed = view.take(40) else { return .truncatedHeader }
        guard fixed.u8(0) >> 4 == 6 else { return .malformedHeader }
        func half(_ at: Int) -> UInt64 { UInt64(fixed.u32(at)) << 32 | UInt64(fixed.u32(at + 4)) }
        h.source = IPAddress(high: half(8), low: half(16))
        h.destination = IPAddress(high: half(24), low: half(32))
        let payloadLength = Int(fixed.u16(4))
        // Payload length 0 without a jumbogram option leaves no readable transport length.
        var remaining = payloadLength
        var next = fixed.u8(6)
        // Extension headers: hop-by-hop, routing, fragment, destination options, AH.
        while next == 0 || next == 43 || next == 44 || next == 60 || next == 51 {
            guard let ext = view.take(8) else { return view.remaining == 0 ? .truncatedHeader : .headersTooLong }
            var length = 8
            if next == 44 {
                h.isFragment = ext.u16(2) & 0xFFF8 != 0
                h.isFirstFragment = !h.isFragment && ext.u16(2) & 1 != 0
            } else if next == 51 {
                length = (Int(ext.u8(1)) + 2) * 4
            } else {
                length = (Int(ext.u8(1)) + 1) * 8
            }
            if length > 8 {
                guard length - 8 <= view.remaining else { return .headersTooLong }
                guard view.take(length - 8) != nil else { return .truncatedHeader }
            }
            remaining -= length
            next = ext.u8(0)
        }
        return parseTransport(&view, protocol: next, payload: remaining, into: &h)
    }

    static func parseTransport(_ view: inout HeaderView, protocol p: UInt8, payload: Int, into h: inout PacketHeaders) -> SkipReason? {
        // Tunnels are walked to the inner headers once (IP-in-IP, 6in4, GRE with IP, Ethernet or ERSPAN II
        // inside), as Wireshark shows the inner TCP; the inner headers count against the same budget.
        if !h.isFragment, !h.insideTunnel, p == 4 || p == 41 || p == 47 {
            h.insideTunnel = true
            var inner = p == 4 ? UInt16(0x0800) : p == 41 ? 0x86DD : 0
            var innerLength = payload
            if p == 47 {
                guard let gre = view.take(4) else { return .truncatedHeader }
                let flags = gre.u16(0)
                guard flags & 0x0007 == 0 else { return nil }  // GRE version 0 only
                var extra = 0
                if flags & 0x8000 != 0 { extra += 4 }
                if flags & 0x2000 != 0 { extra += 4 }
                if flags & 0x1000 != 0 { extra += 4 }
                guard view.take(extra) != nil else { return .truncatedHeader }
                innerLength -= 4 + extra
                switch gre.u16(2) {
                case 0x0800, 0x86DD: inner = gre.u16(2)
                case 0x88BE, 0x6558:  // ERSPAN II (8-byte header) or transparent Ethernet bridging
                    if gre.u16(2) == 0x88BE {
                        guard view.take(8) != nil else { return .truncatedHeader }
                        innerLength -= 8
                    }
                    guard let eth = view.take(14) else { return .truncatedHeader }
                    innerLength -= 14
                    var type = eth.u16(12)
                    if type == 0x8100 {
                        guard let tag = view.take(4) else { return .truncatedHeader }
                        type = tag.u16(2)
                        innerLength -= 4
                    }
                    inner = type
                default:
                    return nil  // other GRE payloads: counted as a tunnel packet, not analysed
                }
            }
            let start = view.offset
            switch inner {
            case 0x0800: return parseIPv4(&view, into: &h, originalLength: start + innerLength)
            case 0x86DD: return parseIPv6(&view, into: &h, originalLength: start + innerLength)
            default: return nil
            }
        }
        switch p {
        case 6: h.transport = .tcp
        case 17: h.transport = .udp
        case 1, 58: h.transport = .icmp
        default: h.transport = .other
        }
        guard !h.isFragment else { return nil }
        switch h.transport {
        case .tcp:
            guard let fixed = view.take(20) else { return .truncatedHeader }
            let headerLength = Int(fixed.u8(12) >> 4) * 4
            guard headerLength >= 20 else { return .malformedHeader }
            // A transport length shorter than the header leaves the segment length unknown (-1): the
            // header counts, the segment is not analysed.
            var tcp = TCPHeader(sequence: fixed.u32(4), acknowledgement: fixed.u32(8), flags: fixed.u8(13), window: fixed.u16(14),
                                payloadLength: payload >= headerLength ? payload - headerLength : -1)
            h.sourcePort = fixed.u16(0)
            h.destinationPort = fixed.u16(2)
            if headerLength > 20 {
                guard let options = view.take(headerLength - 20) else { return .truncatedHeader }
                var i = 0
                while i < options.count {
                    let kind = options.u8(i)
                    if kind == 0 { break }
                    if kind == 1 { i += 1; continue }
                    guard i + 1 < options.count else { break }
                    let length = Int(options.u8(i + 1))
                    guard length >= 2, i + length <= options.count else { break }
                    if kind == 8, length == 10 {
                        tcp.timestampValue = options.u32(i + 2)
                        tcp.timestampEcho = options.u32(i + 6)
                    } else if kind == 3, length == 3 {
                        tcp.windowScale = options.u8(i + 2)
                    }
                    i += length
                }
            }
            h.tcp = tcp
        case .udp:
            guard let udp = view.take(8) else { return .truncatedHeader }
            h.sourcePort = udp.u16(0)
            h.destinationPort = udp.u16(2)
        case .icmp:
            // Type and code only; the quoted packet of an ICMP error is not read.
            guard view.take(4) != nil else { return .truncatedHeader }
        case .other:
            break
        }
        return nil
    }
}

