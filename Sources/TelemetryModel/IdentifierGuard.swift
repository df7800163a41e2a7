#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Recognises raw identifiers in strings that are about to leave a process: MAC addresses in every common
/// spelling, IPv4 and IPv6 addresses, and configured SSIDs.
///
/// Defence in depth behind pseudonymisation: the agent drops a series whose labels trip it (and counts the
/// drop), the collector rejects a report that carries one, and the agent's log handler redacts matches.
/// A pseudonym (`cm_` + base32) never matches: it is exempt from the bare-hex rule (12 hex digits bounded
/// by non-hex characters), and base32 has no `:`, `-` or `.`.
public struct IdentifierGuard: Sendable {
    public enum Finding: String, Sendable, Equatable {
        case macAddress = "MAC address"
        case ipv4Address = "IPv4 address"
        case ipv6Address = "IPv6 address"
        case ssid = "SSID"
    }

    /// SSIDs that must never appear, lowercased. Short SSIDs (under 4 bytes) match whole values only,
    /// longer ones anywhere in a string.
    private let ssids: [String]

    public init(ssids: [String] = []) {
        self.ssids = ssids.filter { !$0.isEmpty }.map { $0.lowercased() }
    }

    /// The first kind of identifier found in `text`, or nil.
    public func finding(in text: String) -> Finding? {
        let bytes = Array(text.utf8)
        if Self.containsMAC(bytes) { return .macAddress }
        if Self.containsIPv4(bytes) { return .ipv4Address }
        if Self.containsIPv6(bytes) { return .ipv6Address }
        if !ssids.isEmpty {
            let lower = text.lowercased()
            for ssid in ssids {
                if ssid.utf8.count < 4 ? lower == ssid : lower.contains(ssid) { return .ssid }
            }
        }
        return nil
    }

    /// `text` with every identifier replaced by `<redacted kind>`; used for log lines.
    public func redact(_ text: String) -> String {
        guard finding(in: text) != nil else { return text }
        // Redact per whitespace-separated word, which covers identifiers in log messages and metadata.
        var out: [String] = []
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if let f = finding(in: String(word)) { out.append("<redacted \(f.rawValue)>") } else { out.append(String(word)) }
        }
        let joined = out.joined(separator: " ")
        // A configured SSID with spaces spans words: redact the whole line rather than leak part of it.
        return finding(in: joined) == nil ? joined : "<redacted line>"
    }

    // MARK: - Scanners over UTF-8 bytes

    private static func isHex(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)
    }
    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    private static func isAlnum(_ b: UInt8) -> Bool {
        isDigit(b) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    /// Does `bytes[i...]` match `shape`, where `h` is a hex digit and any other byte must be equal?
    private static func matches(_ bytes: [UInt8], at i: Int, shape: [UInt8]) -> Bool {
        guard i + shape.count <= bytes.count else { return false }
        for (k, s) in shape.enumerated() {
            let b = bytes[i + k]
            if s == UInt8(ascii: "h") { if !isHex(b) { return false } } else if b != s { return false }
        }
        return true
    }

    private static let macShapes: [[UInt8]] = [
        Array("hh:hh:hh:hh:hh:hh".utf8), Array("hh-hh-hh-hh-hh-hh".utf8),
        Array("hhhh.hhhh.hhhh".utf8), Array("hh.hh.hh.hh.hh.hh".utf8), Array("hh hh hh hh hh hh".utf8),
    ]

    private static func isMACSeparator(_ b: UInt8) -> Bool {
        b == UInt8(ascii: ":") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: " ")
    }

    static func containsMAC(_ bytes: [UInt8]) -> Bool {
        // A pseudonym (`cm_` + 24 base32 characters, an HMAC output) can hold a run of 12 characters from
        // [a-f2-7] by chance; it is exempt from the bare-hex rule only, never from the separated spellings.
        let bareHexExempt = isPseudonymShaped(bytes)
        for i in bytes.indices {
            guard isHex(bytes[i]) else { continue }
            // Every separated spelling has its first separator two bytes in (`hh:`, `hh-`, `hh.`, `hh `) or,
            // for `hhhh.hhhh.hhhh`, four: without one there, no shape can match at i (a pseudonym, base32
            // with no separator, is passed over here at every position).
            if i + 4 < bytes.count, Self.isMACSeparator(bytes[i + 2]) || bytes[i + 4] == UInt8(ascii: ".") {
                for shape in macShapes where matches(bytes, at: i, shape: shape) { return true }
            }
            // Bare 12 hex digits: a run of exactly 12 bounded by non-hex characters, so `enx001b213a4f5e`
            // (systemd's MAC-based interface names) is caught as well as `001b213a4f5e`.
            if !bareHexExempt, i == 0 || !isHex(bytes[i - 1]) {
                var j = i
                while j < bytes.count, isHex(bytes[j]) { j += 1 }
                if j - i == 12 { return true }
            }
        }
        return false
    }

    /// Two lower-case letters, `_`, then 24 characters of lower-case RFC 4648 base32.
    static func isPseudonymShaped(_ b: [UInt8]) -> Bool {
        guard b.count == 27, b[2] == UInt8(ascii: "_"),
              b[0] >= 0x61 && b[0] <= 0x7A, b[1] >= 0x61 && b[1] <= 0x7A else { return false }
        return b[3...].allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x32 && $0 <= 0x37) }
    }

    static func containsIPv4(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count {
            guard isDigit(bytes[i]), i == 0 || !isDigit(bytes[i - 1]) else {
                i += 1
                continue
            }
            var j = i
            var octets = 0
            var ok = true
            while octets < 4 {
                var value = 0
                var digits = 0
                while j < bytes.count, isDigit(bytes[j]), digits < 4 {
                    value = value * 10 + Int(bytes[j] - 0x30)
                    digits += 1
                    j += 1
                }
                if digits == 0 || digits > 3 || value > 255 { ok = false; break }
                octets += 1
                if octets < 4 {
                    guard j < bytes.count, bytes[j] == UInt8(ascii: ".") else { ok = false; break }
                    j += 1
                }
            }
            if ok, octets == 4, j == bytes.count || !isDigit(bytes[j]) { return true }
            i += 1
        }
        return false
    }

    static func containsIPv6(_ bytes: [UInt8]) -> Bool {
        // Candidate runs of [0-9A-Fa-f:.] with at least two colons, checked by the C library's parser.
        var i = 0
        while i < bytes.count {
            var j = i
            var colons = 0
            while j < bytes.count, isHex(bytes[j]) || bytes[j] == UInt8(ascii: ":") || bytes[j] == UInt8(ascii: ".") {
                if bytes[j] == UInt8(ascii: ":") { colons += 1 }
                j += 1
            }
            if colons >= 2 {
                let run = Array(bytes[i..<j])
                // Try every sub-run that starts at a boundary: trailing punctuation must not hide an address.
                for end in stride(from: run.count, through: 2, by: -1) where parsesAsIPv6(Array(run[..<end])) { return true }
            }
            i = j > i ? j : i + 1
        }
        return false
    }

    private static func parsesAsIPv6(_ run: [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        var cString = run.map { CChar(bitPattern: $0) }
        cString.append(0)
        return inet_pton(AF_INET6, cString, &buffer) == 1
    }
}
