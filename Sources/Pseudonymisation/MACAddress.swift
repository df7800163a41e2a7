/// A 48-bit MAC address parsed from any common spelling: `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`,
/// `aabb.ccdd.eeff`, `aabbccddeeff`. Parsing normalises case and separators, so every spelling of one
/// address gives one pseudonym.
public struct MACAddress: Hashable, Sendable {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    public init?(parsing text: String) {
        var digits: [UInt8] = []
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits.append(b - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digits.append(b - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digits.append(b - 0x41 + 10)
            case UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "."): continue
            default: return nil
            }
        }
        guard digits.count == 12 else { return nil }
        bytes = stride(from: 0, to: 12, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    /// The U/L bit: set on randomised ("private") addresses that phones and laptops use per network.
    public var isLocallyAdministered: Bool { bytes[0] & 0x02 != 0 }
    public var isMulticast: Bool { bytes[0] & 0x01 != 0 }
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// The vendor prefix as `AA-BB-CC`, only for globally administered addresses: the OUI of a randomised
    /// address means nothing and is not reported.
    public var organizationallyUniqueIdentifier: String? {
        guard !isLocallyAdministered else { return nil }
        return bytes[0..<3].map { Self.hex($0, upper: true) }.joined(separator: "-")
    }

    static func hex(_ b: UInt8, upper: Bool) -> String {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 0xF)]], as: UTF8.self)
    }
}
