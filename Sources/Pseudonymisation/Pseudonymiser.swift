import Synchronization

/// What an identifier is. Each kind has its own hash domain and wire tag, so a MAC used as a client and
/// the same MAC seen as a BSSID give unrelated pseudonyms.
public struct PseudonymKind: Hashable, Sendable {
    /// Two letters on the wire: `cm_…` is a client MAC.
    public let tag: String
    /// The HMAC domain-separation string.
    public let domain: String

    public static let clientMAC = PseudonymKind(tag: "cm", domain: "meetpunt/v1/client-mac")
    public static let bssid = PseudonymKind(tag: "bs", domain: "meetpunt/v1/bssid")
    public static let ssid = PseudonymKind(tag: "ss", domain: "meetpunt/v1/ssid")
    public static let neighbourBSSID = PseudonymKind(tag: "nb", domain: "meetpunt/v1/neighbour-bssid")
    public static let lanIP = PseudonymKind(tag: "ip", domain: "meetpunt/v1/lan-ip")
}

/// A key epoch: pseudonyms are stable within one and unlinkable across them.
public struct KeyEpoch: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let id: UInt32
    public init(id: UInt32) { self.id = id }

    /// The epoch containing `unixSeconds` for epochs of `lengthSeconds`, counted from the Unix epoch.
    public static func containing(unixSeconds: Int64, lengthSeconds: Int64) -> KeyEpoch {
        precondition(lengthSeconds > 0)
        return KeyEpoch(id: UInt32(truncatingIfNeeded: max(0, unixSeconds) / lengthSeconds))
    }

    public static func < (a: KeyEpoch, b: KeyEpoch) -> Bool { a.id < b.id }
    public var description: String { String(id) }
}

/// Turns identifiers into pseudonyms with a keyed hash, on the device, before anything is stored or sent.
///
/// ```
/// epoch_key = HMAC-SHA256(device_secret, "meetpunt/v1/epoch" || u32be(epoch))
/// digest    = HMAC-SHA256(epoch_key, kind.domain || 0x00 || normalised identifier)
/// pseudonym = kind.tag || "_" || base32lower(digest[0..<15])          (24 characters after the tag)
/// ```
/// A plain hash of a MAC would be reversed by enumerating the 2^24 addresses behind a vendor prefix; the
/// device secret never leaves the router, so nobody off the device can compute or reverse a pseudonym.
/// 120 bits of digest keep collisions negligible for any home (and any fleet).
public struct Pseudonymiser: Sendable, CustomStringConvertible, CustomReflectable {
    private let secret: [UInt8]
    /// The last epoch's key, set up in an HMAC context once instead of derived again for every pseudonym.
    private let current: EpochContext

    public init(secret: DeviceSecret) {
        self.secret = secret.bytes
        current = EpochContext()
    }

    /// Never the secret, whoever prints a pseudonymiser.
    public var description: String { "Pseudonymiser(secret: redacted)" }
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    public func epochKey(_ epoch: KeyEpoch) -> [UInt8] {
        var message = Array("meetpunt/v1/epoch".utf8)
        message += [UInt8(epoch.id >> 24), UInt8(epoch.id >> 16 & 0xFF), UInt8(epoch.id >> 8 & 0xFF), UInt8(epoch.id & 0xFF)]
        return HMACSHA256.authenticationCode(key: secret, message: message)
    }

    /// The pseudonym of raw identifier bytes (normalised by the caller: 6 MAC bytes, SSID octets, 4 or 16
    /// address bytes).
    public func pseudonym(of identifier: [UInt8], kind: PseudonymKind, epoch: KeyEpoch) -> String {
        let message = Array(kind.domain.utf8) + [0] + identifier
        let digest = current.authenticationCode(of: message, epoch: epoch, deriveKey: { epochKey(epoch) })
        return kind.tag + "_" + Base32.lowercase(Array(digest[0..<15]))
    }

    public func pseudonym(of mac: MACAddress, kind: PseudonymKind = .clientMAC, epoch: KeyEpoch) -> String {
        pseudonym(of: mac.bytes, kind: kind, epoch: epoch)
    }

    public func pseudonym(ofSSID ssid: String, epoch: KeyEpoch) -> String {
        pseudonym(of: Array(ssid.utf8), kind: .ssid, epoch: epoch)
    }
}

/// The key of the current and of the previous key epoch, each in an HMAC context, shared by the copies
/// of a ``Pseudonymiser``. One lock covers choosing the epoch's context and hashing with it: the samplers
/// pseudonymise from their own threads, and around an epoch change they may ask for either epoch.
final class EpochContext: Sendable {
    private struct Held: ~Copyable {
        var current: (epoch: KeyEpoch, mac: HMACSHA256.Keyed)?
        var previous: (epoch: KeyEpoch, mac: HMACSHA256.Keyed)?
    }
    private let held = Mutex(Held())

    /// HMAC-SHA256 of `message` under `epoch`'s key; `deriveKey` makes that key when neither held
    /// context is the epoch's (a few microseconds, under the lock).
    func authenticationCode(of message: [UInt8], epoch: KeyEpoch, deriveKey: () -> [UInt8]) -> [UInt8] {
        held.withLock { held in
            if let current = held.current, current.epoch == epoch { return current.mac.authenticationCode(of: message) }
            if let previous = held.previous, previous.epoch == epoch { return previous.mac.authenticationCode(of: message) }
            let mac = HMACSHA256.Keyed(key: deriveKey())
            held.previous = held.current
            held.current = (epoch, mac)
            return mac.authenticationCode(of: message)
        }
    }
}

/// RFC 4648 base32, lower case, no padding (inputs here are multiples of 5 bytes).
enum Base32 {
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    static func lowercase(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 0x1F)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 0x1F)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
