import Crypto
import Foundation
import Pseudonymisation
import Testing

/// Known answers are computed here, independently, with swift-crypto and must equal the agent's
/// libcrypto output.
@Suite struct PseudonymisationTests {
    static let secret = try! DeviceSecret(bytes: Array(0..<32))
    static let epoch = KeyEpoch(id: 683)

    /// The documented construction, written again with swift-crypto.
    static func reference(secret: [UInt8], epoch: UInt32, domain: String, identifier: [UInt8], tag: String) -> String {
        var epochMessage = Array("meetpunt/v1/epoch".utf8)
        withUnsafeBytes(of: epoch.bigEndian) { epochMessage += $0 }
        let epochKey = Array(HMAC<SHA256>.authenticationCode(for: epochMessage, using: SymmetricKey(data: secret)))
        let digest = Array(HMAC<SHA256>.authenticationCode(for: Array(domain.utf8) + [0] + identifier, using: SymmetricKey(data: epochKey)))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var bits = "", out = ""
        for b in digest[0..<15] { bits += String(repeating: "0", count: 8 - String(b, radix: 2).count) + String(b, radix: 2) }
        var i = bits.startIndex
        while i < bits.endIndex {
            let chunk = bits[i..<bits.index(i, offsetBy: 5)]
            out.append(alphabet[Int(chunk, radix: 2)!])
            i = bits.index(i, offsetBy: 5)
        }
        return tag + "_" + out
    }

    @Test func hmacMatchesSwiftCrypto() {
        for length in [0, 1, 31, 32, 64, 200] {
            let key = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let message = Array("the quick brown fox \(length)".utf8)
            let ours = HMACSHA256.authenticationCode(key: key, message: message)
            let theirs = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
            #expect(ours == theirs, "key length \(length)")
        }
    }

    /// A keyed context run many times gives what a fresh one-shot gives, message after message (the
    /// context starts over with its key each time; nothing of the last message carries over).
    @Test func keyedHMACMatchesSwiftCryptoMessageAfterMessage() {
        for length in [0, 1, 32, 64, 65, 200] {
            let key = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
            let keyed = HMACSHA256.Keyed(key: key)
            for n in [0, 5, 0, 64, 1000, 5] {
                let message = (0..<n).map { UInt8(truncatingIfNeeded: $0 &+ length) }
                let theirs = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
                #expect(keyed.authenticationCode(of: message) == theirs, "key length \(length), message length \(n)")
            }
        }
    }

    /// The pseudonymiser keeps the last epoch's key: epochs that come and go, and threads that share
    /// one pseudonymiser, still get the documented pseudonyms.
    @Test func pseudonymsStayTheDocumentedOnesAcrossEpochsAndThreads() async throws {
        let p = Pseudonymiser(secret: Self.secret)
        let macs = (0..<8).map { MACAddress(bytes: [0x02, 0, 0, 0, 0, UInt8($0)])! }
        func expected(_ mac: MACAddress, _ epoch: UInt32) -> String {
            Self.reference(secret: Array(0..<32), epoch: epoch, domain: "meetpunt/v1/client-mac", identifier: mac.bytes, tag: "cm")
        }
        for epoch: UInt32 in [683, 684, 683, 683, 700, 684] {
            for mac in macs { #expect(p.pseudonym(of: mac, epoch: KeyEpoch(id: epoch)) == expected(mac, epoch)) }
        }
        let wrong = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var wrong = 0
                    for round in 0..<200 {
                        let epoch = UInt32(683 + (round + worker) % 3), mac = macs[(round * 3 + worker) % macs.count]
                        if p.pseudonym(of: mac, epoch: KeyEpoch(id: epoch)) != expected(mac, epoch) { wrong += 1 }
                    }
                    return wrong
                }
            }
            return await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }

    /// Printing, interpolating or dumping a secret or a pseudonymiser shows none of the secret's bytes.
    @Test func secretsDoNotPrint() throws {
        let bytes = (0..<32).map { UInt8(0xA0 + $0 % 16) }
        let secret = try DeviceSecret(bytes: bytes)
        let p = Pseudonymiser(secret: secret)
        var dumped = ""
        dump(secret, to: &dumped)
        dump(p, to: &dumped)
        let printed = ["\(secret)", String(reflecting: secret), "\(p)", String(reflecting: p), dumped]
        for text in printed {
            #expect(!text.contains("160") && !text.lowercased().contains("a0a1") && !text.contains("[160"), "\(text)")
        }
        #expect("\(secret)" == "DeviceSecret(redacted)")
    }

    /// The known answers documented in docs/privacy.md.
    @Test func knownAnswers() throws {
        let p = Pseudonymiser(secret: Self.secret)
        let mac = try #require(MACAddress(parsing: "00:1b:21:3a:4f:5e"))
        let client = p.pseudonym(of: mac, kind: .clientMAC, epoch: Self.epoch)
        #expect(client == Self.reference(secret: Array(0..<32), epoch: 683, domain: "meetpunt/v1/client-mac", identifier: mac.bytes, tag: "cm"))
        #expect(client == "cm_un5wgo2cd5qeprw2i6cot3zx")
        let ssid = p.pseudonym(ofSSID: "HomeNet-5G", epoch: Self.epoch)
        #expect(ssid == "ss_dvomhbxfcpumn5p5rwu2riwl")
        #expect(ssid == Self.reference(secret: Array(0..<32), epoch: 683, domain: "meetpunt/v1/ssid", identifier: Array("HomeNet-5G".utf8), tag: "ss"))
        let bssid = p.pseudonym(of: mac, kind: .bssid, epoch: Self.epoch)
        #expect(bssid == Self.reference(secret: Array(0..<32), epoch: 683, domain: "meetpunt/v1/bssid", identifier: mac.bytes, tag: "bs"))
        for s in [client, ssid, bssid] { #expect(s.count == 27) }
    }

    @Test func everySpellingOfOneMACGivesOnePseudonym() throws {
        let p = Pseudonymiser(secret: Self.secret)
        let spellings = IdentifierGuardTests.spellings("00:1b:21:3a:4f:5e")
        let pseudonyms = Set(try spellings.map { try #require(MACAddress(parsing: $0)) }.map { p.pseudonym(of: $0, epoch: Self.epoch) })
        #expect(pseudonyms.count == 1)
    }

    @Test func devicesEpochsAndKindsSeparatePseudonyms() throws {
        let mac = try #require(MACAddress(parsing: "00:1b:21:3a:4f:5e"))
        let a = Pseudonymiser(secret: Self.secret)
        let b = Pseudonymiser(secret: try DeviceSecret(bytes: Array(repeating: 9, count: 32)))
        #expect(a.pseudonym(of: mac, epoch: Self.epoch) == a.pseudonym(of: mac, epoch: Self.epoch), "stable within an epoch")
        #expect(a.pseudonym(of: mac, epoch: Self.epoch) != b.pseudonym(of: mac, epoch: Self.epoch), "unrelated on two routers")
        #expect(a.pseudonym(of: mac, epoch: Self.epoch) != a.pseudonym(of: mac, epoch: KeyEpoch(id: 684)), "unlinkable across epochs")
        #expect(a.pseudonym(of: mac, kind: .clientMAC, epoch: Self.epoch).dropFirst(3) != a.pseudonym(of: mac, kind: .bssid, epoch: Self.epoch).dropFirst(3))
    }

    @Test func macLabelsKeepOnlyTheULBitAndTheOUI() throws {
        let global = try #require(MACAddress(parsing: "00-1B-21-3A-4F-5E"))
        #expect(!global.isLocallyAdministered)
        #expect(global.organizationallyUniqueIdentifier == "00-1B-21")
        let random = try #require(MACAddress(parsing: "da:a1:19:00:00:01"))
        #expect(random.isLocallyAdministered)
        #expect(random.organizationallyUniqueIdentifier == nil)
        #expect(MACAddress(parsing: "00:1b:21:3a:4f") == nil)
        #expect(MACAddress(parsing: "00:1b:21:3a:4f:5g") == nil)
    }

    @Test func epochsFollowTheConfiguredLength() {
        let thirtyDays: Int64 = 30 * 86_400
        #expect(KeyEpoch.containing(unixSeconds: 0, lengthSeconds: thirtyDays).id == 0)
        #expect(KeyEpoch.containing(unixSeconds: thirtyDays - 1, lengthSeconds: thirtyDays).id == 0)
        #expect(KeyEpoch.containing(unixSeconds: thirtyDays, lengthSeconds: thirtyDays).id == 1)
    }

    @Test func deviceSecretIsCreatedPrivateAndReused() throws {
        let dir = try TestSupport.tempDirectory()
        let path = dir.appendingPathComponent("device-secret").path
        let first = try DeviceSecret.loadOrCreate(at: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try DeviceSecret.loadOrCreate(at: path).bytes == first.bytes)
        let other = try DeviceSecret.loadOrCreate(at: dir.appendingPathComponent("other").path)
        #expect(other.bytes != first.bytes)
        // A secret others can read is refused with the fix in the message.
        chmod(path, 0o644)
        #expect { try DeviceSecret.load(at: path) } throws: { "\($0)".contains("chmod 600") }
    }
}
