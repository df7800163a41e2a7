/// The only way the parser sees packet bytes: a forward-only cursor over the captured header region.
///
/// Payload is out of reach by construction. The cursor never extends past ``HeaderLimits/maximumBytes``
/// (the header maximum the snaplen is computed from) nor past the captured length, and bytes are read
/// only through ``take(_:)``, which claims the next structure (an Ethernet header, an IP header, a TCP
/// header with its options). Nothing can claim the bytes after the transport header, because the
/// parser stops there and there is no API to read at an arbitrary offset or to get the pointer back.
/// A `HeaderView` is only valid inside the closure it was handed to (`~Escapable` in spirit: it is
/// non-copyable, so it cannot be stored).
public struct HeaderView: ~Copyable {
    private let base: UnsafeRawPointer
    private let end: Int
    public private(set) var offset = 0

    /// `capturedLength` bytes at `base`, of which at most ``HeaderLimits/maximumBytes`` are reachable.
    init(base: UnsafeRawPointer, capturedLength: Int) {
        self.base = base
        self.end = Swift.min(capturedLength, HeaderLimits.maximumBytes)
    }

    /// Bytes left that a header may still claim.
    public var remaining: Int { end - offset }

    /// The IP version nibble at the cursor, without claiming it (a raw-IP link's first header byte).
    public func peekVersion() -> UInt8? {
        guard offset < end else { return nil }
        return base.load(fromByteOffset: offset, as: UInt8.self) >> 4
    }

    /// Steps over `count` bytes of link metadata without reading them (NFLOG's attributes before its
    /// packet). Bounded like `take`; false when they were not captured.
    public mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, count <= end - offset else { return false }
        offset += count
        return true
    }

    /// Claims the next `count` bytes as one header structure; nil (claiming nothing) when they were not
    /// captured, which the parser reports as a truncated header.
    public mutating func take(_ count: Int) -> HeaderBytes? {
        guard count >= 0, count <= end - offset else { return nil }
        let bytes = HeaderBytes(base: base + offset, count: count)
        offset += count
        return bytes
    }
}

/// One claimed header structure: fixed-size reads within it, bounds-checked.
public struct HeaderBytes {
    fileprivate let base: UnsafeRawPointer
    public let count: Int

    @inline(__always) public func u8(_ i: Int) -> UInt8 {
        precondition(i >= 0 && i < count, "header read outside its structure")
        return base.load(fromByteOffset: i, as: UInt8.self)
    }
    /// Big-endian (network order). One bounds check per field, one unaligned load.
    @inline(__always) public func u16(_ i: Int) -> UInt16 {
        precondition(i >= 0 && i <= count - 2, "header read outside its structure")
        return UInt16(bigEndian: base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
    }
    @inline(__always) public func u32(_ i: Int) -> UInt32 {
        precondition(i >= 0 && i <= count - 4, "header read outside its structure")
        return UInt32(bigEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self))
    }
    /// Little-endian (SLL2's interface index is network order too; kept for link headers that are not).
    @inline(__always) public func u16le(_ i: Int) -> UInt16 { UInt16(u8(i)) | UInt16(u8(i + 1)) << 8 }
    @inline(__always) public func u32le(_ i: Int) -> UInt32 { UInt32(u16le(i)) | UInt32(u16le(i + 2)) << 16 }
    public func bytes(_ range: Range<Int>) -> [UInt8] { range.map(u8) }
}

/// The largest header stack Meetpunt parses, which is the snaplen it captures with.
public enum HeaderLimits {
    /// Link: Ethernet 14 + two VLAN tags 8 + PPPoE 8 = 30 on a home router's ports; PBB (18), LLC/SNAP (8)
    /// and up to four MPLS labels (16) on the transit captures `analyze` reads: 64 in all.
    public static let linkBytes = 64
    /// IPv6 40 + extension headers (hop-by-hop, routing, fragment, destination) up to 72 bytes in all;
    /// IPv4 is at most 60.
    public static let networkBytes = 112
    /// TCP with options: at most 60. (UDP and ICMP headers are 8.)
    public static let transportBytes = 60
    /// How far the parser may read in any packet (a file's transit encapsulations included).
    public static let maximumBytes = linkBytes + networkBytes + transportBytes
    /// The live capture's snaplen: a router's own ports carry Ethernet with at most two VLAN tags and
    /// PPPoE (30 bytes), so 30 + 112 + 60 = 202 bytes cover every header and not one payload byte more
    /// than the longest such stack needs.
    public static let liveCaptureBytes = 30 + networkBytes + transportBytes
}
