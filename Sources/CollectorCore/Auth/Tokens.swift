import Crypto
import Foundation

/// Bearer tokens: `mpt_` + 64 hex digits of randomness. Only the SHA-256 of a token is stored; the token
/// itself is printed once, at creation.
public enum BearerToken {
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return "mpt_" + bytes.map { String(format: "%02x", $0) }.joined()
    }

    public static func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// Constant-time equality of two hashes.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// The authenticated caller of a request.
public struct Principal: Sendable {
    public let token: TokenRecord
    /// `role:name`, as written to the audit trail.
    public var actor: String { "\(token.role.rawValue):\(token.name)" }
}
