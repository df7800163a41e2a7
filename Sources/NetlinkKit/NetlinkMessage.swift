/// One netlink message as bytes: the 16-byte header and its payload. Pure Swift, so replies recorded
/// from the kernel (nlmon captures) parse in tests exactly as live replies do.
public struct NetlinkMessage: Sendable, Equatable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32
    public var portID: UInt32
    /// The bytes after the netlink header.
    public var payload: [UInt8]

    /// `NLM_F_MULTI`, `NLM_F_DUMP_INTR`: the flags a dump reader looks at.
    public static let flagMulti: UInt16 = 0x2
    public static let flagDumpInterrupted: UInt16 = 0x10
    public static let typeError: UInt16 = 2
    public static let typeDone: UInt16 = 3

    public var isDumpInterrupted: Bool { flags & Self.flagDumpInterrupted != 0 }

    public init(type: UInt16, flags: UInt16, sequence: UInt32, portID: UInt32, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.sequence = sequence
        self.portID = portID
        self.payload = payload
    }

    /// Splits a buffer holding one or more netlink messages (as one `recv` returns them, or one nlmon
    /// packet). A length field that runs past the buffer is an error naming the offset.
    public static func split(_ bytes: [UInt8]) throws(NetlinkError) -> [NetlinkMessage] {
        var result: [NetlinkMessage] = []
        var offset = 0
        while bytes.count - offset >= 16 {
            let length = Int(bytes.readU32(at: offset))
            guard length >= 16, offset + length <= bytes.count else {
                throw NetlinkError(.malformed, "netlink message at offset \(offset) claims \(length) bytes, \(bytes.count - offset) present")
            }
            result.append(NetlinkMessage(type: bytes.readU16(at: offset + 4), flags: bytes.readU16(at: offset + 6),
                                         sequence: bytes.readU32(at: offset + 8), portID: bytes.readU32(at: offset + 12),
                                         payload: Array(bytes[(offset + 16)..<(offset + length)])))
            offset += (length + 3) & ~3
        }
        return result
    }

    /// The errno of an `NLMSG_ERROR` message (0 is an acknowledgement), nil for other types.
    public var errorNumber: Int32? {
        guard type == Self.typeError, payload.count >= 4 else { return nil }
        return -Int32(bitPattern: payload.readU32(at: 0))
    }
}

/// A generic-netlink message: command, version and the top-level attributes.
public struct GenericNetlinkMessage: Sendable {
    public var command: UInt8
    public var attributes: NetlinkAttributes
    public var flags: UInt16

    public init?(_ message: NetlinkMessage) {
        guard message.type >= 16, message.payload.count >= 4 else { return nil }
        command = message.payload[0]
        flags = message.flags
        attributes = NetlinkAttributes(message.payload[4...])
    }
}

/// A parsed attribute list (`struct nlattr` TLVs, 4-byte aligned). Unknown and malformed trailing
/// attributes are skipped, never trusted: a truncated attribute ends the list.
public struct NetlinkAttributes: Sendable {
    private var table: [UInt16: ArraySlice<UInt8>] = [:]
    /// In order of appearance, for nested lists whose type is an index (chain signals, TIDs, BSSes).
    public private(set) var ordered: [(type: UInt16, value: ArraySlice<UInt8>)] = []

    public init(_ bytes: ArraySlice<UInt8>) {
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= 4 {
            let length = Int(bytes.readU16(at: offset))
            let type = bytes.readU16(at: offset + 2) & 0x3FFF  // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            let value = bytes[(offset + 4)..<(offset + length)]
            if table[type] == nil { table[type] = value }
            ordered.append((type, value))
            offset += (length + 3) & ~3
        }
    }

    public func has(_ type: UInt16) -> Bool { table[type] != nil }
    public func bytes(_ type: UInt16) -> [UInt8]? { table[type].map(Array.init) }
    public func u8(_ type: UInt16) -> UInt8? { value(type, size: 1).map { $0[$0.startIndex] } }
    public func s8(_ type: UInt16) -> Int8? { u8(type).map { Int8(bitPattern: $0) } }
    public func u16(_ type: UInt16) -> UInt16? { value(type, size: 2).map { $0.readU16(at: $0.startIndex) } }
    public func u32(_ type: UInt16) -> UInt32? { value(type, size: 4).map { $0.readU32(at: $0.startIndex) } }
    public func s32(_ type: UInt16) -> Int32? { u32(type).map { Int32(bitPattern: $0) } }
    public func u64(_ type: UInt16) -> UInt64? { value(type, size: 8).map { $0.readU64(at: $0.startIndex) } }
    public func nested(_ type: UInt16) -> NetlinkAttributes? { table[type].map(NetlinkAttributes.init) }
    /// A NUL-terminated string attribute.
    public func string(_ type: UInt16) -> String? {
        guard let v = table[type] else { return nil }
        return String(decoding: v.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The value when it is at least `size` bytes (a shorter one is malformed and ignored).
    private func value(_ type: UInt16, size: Int) -> ArraySlice<UInt8>? {
        guard let v = table[type], v.count >= size else { return nil }
        return v
    }
}

extension Collection where Element == UInt8, Index == Int {
    // Netlink is host byte order; every Linux target Meetpunt runs on is little-endian.
    func readU16(at i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    func readU32(at i: Int) -> UInt32 { UInt32(readU16(at: i)) | UInt32(readU16(at: i + 2)) << 16 }
    func readU64(at i: Int) -> UInt64 { UInt64(readU32(at: i)) | UInt64(readU32(at: i + 4)) << 32 }
}
