import AgentConfig
@testable import AgentCore
import Foundation
import GzipCodec
import Testing

/// The durable spool on real files: what was appended survives a reopen, a torn tail is cut and counted,
/// the sequence never goes back, and the bounds drop the oldest windows and say so.
@Suite struct SpoolTests {
    static func body(_ seq: UInt64, size: Int = 300) -> [UInt8] {
        var g = TestBytes(seed: seq)
        return (0..<size).map { _ in UInt8(truncatingIfNeeded: g.next()) }
    }

    static func config(maxBytes: Int = 8 << 20, maxAgeHours: Int = 168) -> AgentConfiguration.Spool {
        .init(maxBytes: maxBytes, maxAgeHours: maxAgeHours, fsync: .always)
    }

    static func segments(_ dir: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: dir.appendingPathComponent("spool"), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "seg" }.sorted { $0.path < $1.path }
    }

    @Test func appendedReportsSurviveAReopenAndAcknowledgedOnesDoNot() throws {
        let dir = try TestSupport.tempDirectory()
        do {
            let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
            for seq in UInt64(1)...5 { try spool.append(seq: seq, windowStartMs: Int64(seq) * 1000, windowEndMs: Int64(seq) * 1000 + 999, gzipBody: Self.body(seq), nowMs: nil) }
            spool.acknowledge([1, 2, 4])
        }
        let reopened = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
        #expect(reopened.recovery.tornRecords == 0)
        #expect(reopened.lastSeq == 5)
        // 4 was acknowledged out of order: only the watermark (2) is durable, so 4 comes back and is
        // answered "duplicate" by the collector, never lost.
        let left = reopened.oldest(maxReports: 10, maxBytes: 1 << 20, nowMs: nil)
        #expect(left.map(\.seq) == [3, 4, 5])
        #expect(left.map(\.gzipBody) == [Self.body(3), Self.body(4), Self.body(5)])
        #expect(left[0].windowStartMs == 3000 && left[0].windowEndMs == 3999)
    }

    @Test(arguments: ["half a header", "half a payload", "a flipped payload byte", "zeros"])
    func aTornLastRecordIsCutAndCounted(damage: String) throws {
        let dir = try TestSupport.tempDirectory()
        do {
            let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
            for seq in UInt64(1)...3 { try spool.append(seq: seq, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(seq), nowMs: nil) }
        }
        let file = try #require(try Self.segments(dir).last)
        var bytes = try Data(contentsOf: file)
        let intact = bytes.count
        let record = DiskSpool.record(kind: DiskSpool.kindReport, a: 4, b: 0, c: 1, payload: Self.body(4))
        switch damage {
        case "half a header": bytes += record.prefix(20)
        case "half a payload": bytes += record.prefix(DiskSpool.headerBytes + 150)
        case "a flipped payload byte":
            var r = record
            r[DiskSpool.headerBytes + 7] ^= 0x40
            bytes += r
        default: bytes += Data(count: 4096)
        }
        try bytes.write(to: file)
        let reopened = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
        #expect(reopened.recovery.tornRecords == 1, "\(damage)")
        #expect(reopened.oldest(maxReports: 10, maxBytes: 1 << 20, nowMs: nil).map(\.seq) == [1, 2, 3], "\(damage)")
        #expect(try Data(contentsOf: file).count == intact, "the torn tail is truncated")
        try reopened.append(seq: 4, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(4), nowMs: nil)
        let again = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
        #expect(again.recovery.tornRecords == 0)
        #expect(again.oldest(maxReports: 10, maxBytes: 1 << 20, nowMs: nil).map(\.seq) == [1, 2, 3, 4])
    }

    @Test func theSequenceNeverGoesBackEvenWhenEverySegmentWasDeleted() throws {
        let dir = try TestSupport.tempDirectory()
        let small = Self.config(maxBytes: 256 << 10)  // 64 KiB segments
        do {
            let spool = try DiskSpool(stateDirectory: dir.path, configuration: small)
            for seq in UInt64(1)...600 {
                try spool.append(seq: seq, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(seq), nowMs: nil)
                spool.acknowledge([seq])
            }
            #expect(try Self.segments(dir).count == 1, "finished segments are deleted")
        }
        let reopened = try DiskSpool(stateDirectory: dir.path, configuration: small)
        #expect(reopened.lastSeq == 600)
        #expect(reopened.count == 0)
    }

    @Test func aLegacySequenceFileIsFoldedInAndRemoved() throws {
        let dir = try TestSupport.tempDirectory()
        try "41\n".write(to: dir.appendingPathComponent("sequence"), atomically: true, encoding: .utf8)
        do {
            let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config())
            #expect(spool.lastSeq == 41)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("sequence").path))
        #expect(try DiskSpool(stateDirectory: dir.path, configuration: Self.config()).lastSeq == 41)
    }

    @Test func theByteBoundDropsTheOldestWindowsAndReportsTheirSpan() throws {
        let dir = try TestSupport.tempDirectory()
        let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config(maxBytes: 256 << 10))
        for seq in UInt64(1)...2000 {
            try spool.append(seq: seq, windowStartMs: Int64(seq) * 60_000, windowEndMs: Int64(seq + 1) * 60_000, gzipBody: Self.body(seq), nowMs: nil)
            #expect(spool.bytesOnDisk <= 256 << 10)
        }
        let drops = spool.takeDrops()
        let kept = spool.oldest(maxReports: 10_000, maxBytes: 64 << 20, nowMs: nil).map(\.seq)
        #expect(drops.droppedReports + kept.count == 2000)
        #expect(kept.last == 2000 && kept == Array(kept.first!...2000), "the newest windows are kept, contiguous")
        #expect(drops.firstDroppedStartMs == 60_000)
        #expect(drops.lastDroppedEndMs == Int64(kept.first!) * 60_000)
        #expect(spool.takeDrops() == DiskSpool.Drops(), "drops are handed out once")
    }

    @Test func windowsOlderThanTheAgeBoundAreDropped() throws {
        let dir = try TestSupport.tempDirectory()
        let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config(maxAgeHours: 1))
        let now: Int64 = 1_800_000_000_000
        for seq in UInt64(1)...10 {
            // Windows ending 100, 90, ... 10 minutes ago.
            let end = now - Int64(11 - Int(seq)) * 10 * 60_000
            try spool.append(seq: seq, windowStartMs: end - 60_000, windowEndMs: end, gzipBody: Self.body(seq), nowMs: nil)
        }
        #expect(spool.oldest(maxReports: 100, maxBytes: 1 << 20, nowMs: now).map(\.seq) == [5, 6, 7, 8, 9, 10])
        #expect(spool.takeDrops().droppedReports == 4)
    }

    /// A small tmpfs as the state directory: a full disk fails the append (counted), loses nothing already
    /// spooled, and the spool works again once there is room.
    @Test(.enabled(if: TestSupport.isRoot, "needs root to mount a tmpfs"))
    func aFullDiskIsCountedAndRecoveredFrom() throws {
        let dir = try TestSupport.tempDirectory()
        try TestSupport.sh("mount -t tmpfs -o size=512k meetpunt-test \(dir.path)")
        defer { _ = try? TestSupport.sh("umount \(dir.path)", check: false) }
        let spool = try DiskSpool(stateDirectory: dir.path, configuration: Self.config(maxBytes: 8 << 20))
        try spool.append(seq: 1, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(1), nowMs: nil)
        try TestSupport.sh("dd if=/dev/zero of=\(dir.path)/filler bs=4k 2>/dev/null || true")
        var failures = 0
        for seq in UInt64(2)...11 {
            do { try spool.append(seq: seq, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(seq, size: 3000), nowMs: nil) } catch {
                #expect(error.code == .spool && error.errno == ENOSPC, "\(error)")
                failures += 1
            }
        }
        #expect(failures > 0, "the tmpfs was full")
        #expect(spool.takeDrops().unspooledReports == failures)
        try FileManager.default.removeItem(atPath: "\(dir.path)/filler")
        try spool.append(seq: 12, windowStartMs: 0, windowEndMs: 1, gzipBody: Self.body(12), nowMs: nil)
        let reopened = try DiskSpool(stateDirectory: dir.path, configuration: Self.config(maxBytes: 8 << 20))
        #expect(reopened.recovery.tornRecords == 0, "a failed write is cut back, not left torn")
        let seqs = reopened.oldest(maxReports: 100, maxBytes: 1 << 20, nowMs: nil).map(\.seq)
        #expect(seqs.first == 1 && seqs.last == 12)
        #expect(seqs.count == 12 - failures, "everything that was spooled is still there")
        #expect(reopened.lastSeq == 12)
    }
}

/// A tiny deterministic generator for test payloads.
struct TestBytes {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
