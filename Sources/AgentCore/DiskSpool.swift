#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import GzipCodec
import Synchronization

/// The agent's durable queue of reports not yet acknowledged, and its report sequence: one state on disk.
///
/// Layout: `<state_dir>/spool/NNNNNNNNNNNNNNNNNNNN.seg`, append-only segment files numbered in order. Each
/// record is a 40-byte header (magic, kind, payload length, three 64-bit fields, CRC-32 over header and
/// payload) and a payload:
/// - a *report* record: seq, window start and end (Unix ms), the gzip-compressed JSON report;
/// - a *mark* record: every seq ≤ `doneThrough` is acknowledged or dropped, and `lastSeq` is the last
///   sequence number used. Each new segment starts with one, so deleting old segments keeps both.
///
/// Recovery reads every segment in order. A record that does not check out at the end of the last
/// segment is a torn write (power cut, disk full): the file is truncated there and the tear counted. The
/// same in an earlier segment is corruption: the rest of that segment is skipped, counted, and logged by
/// the caller. The last sequence number is the largest seen in any record, so a restart never reuses one.
///
/// Bounds: `maxBytes` on disk (segments of an eighth of it; the oldest whole segment goes first when the
/// next record would not fit) and `maxAgeHours` (windows that ended earlier are dropped). Drops are
/// counted with their span and handed to the next report by ``takeDrops()``.
///
/// Thread-safe (one `Mutex`); every method does blocking file I/O, so callers on the cooperative pool go
/// through ``BlockingCall``.
public final class DiskSpool: Sendable {
    public struct Entry: Sendable, Equatable {
        public var seq: UInt64
        public var windowStartMs: Int64
        public var windowEndMs: Int64
        var segment: UInt64
        var offset: Int
        var length: Int
    }

    /// A report read back for sending.
    public struct Stored: Sendable, Equatable {
        public var seq: UInt64
        public var windowStartMs: Int64
        public var windowEndMs: Int64
        public var gzipBody: [UInt8]
    }

    /// What recovery found when the spool was opened.
    public struct Recovery: Sendable, Equatable {
        public var reports: Int
        public var lastSeq: UInt64
        public var tornRecords: Int
        public var corruptSegments: Int
        public var bytes: Int
    }

    /// Windows removed unsent (bound or age) and reports that could not be written, since the last call.
    public struct Drops: Sendable, Equatable {
        public var droppedReports = 0
        public var firstDroppedStartMs: Int64?
        public var lastDroppedEndMs: Int64?
        public var unspooledReports = 0
        /// Reports the collector refused for good, or that could not be read back to send: removed unsent.
        public var rejectedReports = 0
        public init() {}
    }

    struct Segment {
        var number: UInt64
        var bytes: Int
        var maxSeq: UInt64
    }

    struct State: ~Copyable {
        var entries: [Entry] = []
        var segments: [Segment] = []
        var doneThrough: UInt64 = 0
        var lastSeq: UInt64 = 0
        var fd: Int32 = -1
        var drops = Drops()
        var bytesWritten: UInt64 = 0
        deinit { if fd >= 0 { close(fd) } }
    }

    public let directory: String
    public let maxBytes: Int
    public let maxAgeMilliseconds: Int64
    public let fsync: AgentConfiguration.FsyncPolicy
    let segmentBytes: Int
    private let state: Mutex<State>
    public let recovery: Recovery

    static let magic: UInt32 = 0x3153_504D  // "MPS1" little-endian
    static let headerBytes = 40
    static let kindReport: UInt8 = 1
    static let kindMark: UInt8 = 2

    /// Opens (creating) the spool under `stateDirectory`. A legacy `sequence` file (agents before 0.3) is
    /// folded into the spool's first mark and removed, so the two can never disagree.
    public init(stateDirectory: String, configuration: AgentConfiguration.Spool) throws(AgentError) {
        directory = stateDirectory + "/spool"
        maxBytes = configuration.maxBytes
        maxAgeMilliseconds = Int64(configuration.maxAgeHours) * 3_600_000
        fsync = configuration.fsync
        segmentBytes = max(64 << 10, configuration.maxBytes / 8)
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw AgentError(.spool, "cannot create spool directory \(directory): \(String(cString: strerror(errno)))", errno: errno)
        }
        var s = State()
        var torn = 0, corrupt = 0
        let numbers = try Self.segmentNumbers(in: directory)
        for (i, number) in numbers.enumerated() {
            let path = Self.path(directory, number)
            let bytes = try Self.readFile(path)
            var offset = 0
            var maxSeq: UInt64 = 0
            while offset < bytes.count {
                guard let r = Self.parseRecord(bytes, at: offset) else {
                    if i == numbers.count - 1 {
                        torn += 1
                        guard truncate(path, off_t(offset)) == 0 else {
                            throw AgentError(.spool, "cannot truncate torn record in \(path) at offset \(offset): \(String(cString: strerror(errno)))", errno: errno)
                        }
                    } else {
                        corrupt += 1
                    }
                    break
                }
                if r.kind == Self.kindReport {
                    s.entries.append(Entry(seq: r.a, windowStartMs: Int64(bitPattern: r.b), windowEndMs: Int64(bitPattern: r.c),
                                           segment: number, offset: offset + Self.headerBytes, length: r.length))
                    s.lastSeq = max(s.lastSeq, r.a)
                    maxSeq = max(maxSeq, r.a)
                } else {
                    s.doneThrough = max(s.doneThrough, r.a)
                    s.lastSeq = max(s.lastSeq, r.b)
                }
                offset += Self.headerBytes + r.length
            }
            s.segments.append(Segment(number: number, bytes: offset, maxSeq: maxSeq))
        }
        let done = s.doneThrough
        s.entries.removeAll { $0.seq <= done }
        s.entries.sort { $0.seq < $1.seq }
        // Agents before 0.3 kept the sequence in its own file.
        let legacy = stateDirectory + "/sequence"
        var legacySeq: UInt64?
        if let text = try? AgentState.read(legacy), let n = UInt64(text.split(separator: "\n").first ?? "") { legacySeq = n }
        if let legacySeq { s.lastSeq = max(s.lastSeq, legacySeq) }

        if let last = s.segments.last {
            s.fd = open(Self.path(directory, last.number), O_WRONLY | O_APPEND | O_CLOEXEC)
            guard s.fd >= 0 else { throw AgentError(.spool, "cannot open \(Self.path(directory, last.number)): \(String(cString: strerror(errno)))", errno: errno) }
        } else {
            try Self.startSegment(&s, number: 1, directory: directory)
        }
        if legacySeq != nil {
            try Self.writeMark(&s, sync: true)
            unlink(legacy)
        }
        Self.deleteFinishedSegments(&s, directory: directory)
        recovery = Recovery(reports: s.entries.count, lastSeq: s.lastSeq, tornRecords: torn, corruptSegments: corrupt,
                            bytes: s.segments.reduce(0) { $0 + $1.bytes })
        state = Mutex(s)
    }

    // MARK: Writing

    /// The last sequence number used; the next report is `lastSeq + 1`.
    public var lastSeq: UInt64 { state.withLock { $0.lastSeq } }

    /// Appends a report and, with `fsync: always`, makes it durable before returning: only then does it
    /// count as spooled. Makes room first (age, then the oldest segment). Throws when the write fails
    /// (disk full); the file is cut back to where it was and the report counted as unspooled.
    public func append(seq: UInt64, windowStartMs: Int64, windowEndMs: Int64, gzipBody: [UInt8], nowMs: Int64?) throws(AgentError) {
        let recordBytes = Self.headerBytes + gzipBody.count
        try state.withLock { (s: inout State) throws(AgentError) in
            precondition(seq > s.lastSeq, "sequence numbers only grow")
            guard recordBytes <= segmentBytes else {
                s.drops.unspooledReports += 1
                throw AgentError(.spool, "report \(seq) is \(recordBytes) bytes, more than a spool segment (\(segmentBytes)); raise spool.max_bytes")
            }
            if let nowMs { dropExpired(&s, nowMs: nowMs) }
            if s.segments[s.segments.count - 1].bytes + recordBytes > segmentBytes {
                do throws(AgentError) { try Self.startSegment(&s, number: s.segments[s.segments.count - 1].number + 1, directory: directory) } catch {
                    s.drops.unspooledReports += 1
                    throw error
                }
            }
            while s.segments.count > 1, s.segments.reduce(0, { $0 + $1.bytes }) + recordBytes > maxBytes {
                dropOldestSegment(&s)
            }
            let record = Self.record(kind: Self.kindReport, a: seq, b: UInt64(bitPattern: windowStartMs), c: UInt64(bitPattern: windowEndMs), payload: gzipBody)
            let offset = s.segments[s.segments.count - 1].bytes
            do throws(AgentError) { try Self.writeAll(&s, record, sync: fsync == .always) } catch {
                s.drops.unspooledReports += 1
                throw error
            }
            s.lastSeq = seq
            s.entries.append(Entry(seq: seq, windowStartMs: windowStartMs, windowEndMs: windowEndMs,
                                   segment: s.segments[s.segments.count - 1].number, offset: offset + Self.headerBytes, length: gzipBody.count))
            s.segments[s.segments.count - 1].maxSeq = seq
        }
    }

    /// Puts back drops taken for a report that was then not spooled, so the next report carries them.
    public func returnDrops(_ d: Drops) {
        state.withLock { s in
            s.drops.droppedReports += d.droppedReports
            s.drops.unspooledReports += d.unspooledReports
            s.drops.rejectedReports += d.rejectedReports
            if let f = d.firstDroppedStartMs { s.drops.firstDroppedStartMs = min(s.drops.firstDroppedStartMs ?? .max, f) }
            if let l = d.lastDroppedEndMs { s.drops.lastDroppedEndMs = max(s.drops.lastDroppedEndMs ?? .min, l) }
        }
    }

    /// Counts a report that never reached `append` (it could not be built): it shows in the next drops.
    public func countUnspooled() { state.withLock { $0.drops.unspooledReports += 1 } }

    /// Removes acknowledged (or permanently rejected) reports. The watermark written is the highest seq
    /// below which nothing is pending; a report acknowledged out of order is forgotten in memory and, after
    /// a crash, sent again and acknowledged as a duplicate.
    public func acknowledge(_ seqs: Set<UInt64>, rejected: Int = 0) {
        guard !seqs.isEmpty else { return }
        state.withLock { s in
            s.drops.rejectedReports += rejected
            s.entries.removeAll { seqs.contains($0.seq) }
            let newDone = (s.entries.first?.seq).map { $0 - 1 } ?? s.lastSeq
            guard newDone > s.doneThrough else { return }
            s.doneThrough = newDone
            // A mark is not synced on its own: if it is lost, the reports are sent again and the collector
            // answers "duplicate". The next report's fsync carries it.
            try? Self.writeMark(&s, sync: false)
            Self.deleteFinishedSegments(&s, directory: directory)
        }
    }

    /// Drops and unspooled reports since the last call.
    public func takeDrops() -> Drops {
        state.withLock { s in
            defer { s.drops = Drops() }
            return s.drops
        }
    }

    // MARK: Reading

    /// The oldest reports, at most `maxReports` and (past the first) `maxBytes` of payload, read from disk.
    /// A record that can no longer be read is dropped and counted rather than blocking the queue.
    public func oldest(maxReports: Int, maxBytes: Int, nowMs: Int64?) -> [Stored] {
        state.withLock { s in
            if let nowMs { dropExpired(&s, nowMs: nowMs) }
            var out: [Stored] = []
            var total = 0
            var unreadable: Set<UInt64> = []
            for e in s.entries.prefix(maxReports) {
                if !out.isEmpty, total + e.length > maxBytes { break }
                guard let body = Self.readRange(Self.path(directory, e.segment), offset: e.offset, length: e.length) else {
                    unreadable.insert(e.seq)
                    continue
                }
                total += e.length
                out.append(Stored(seq: e.seq, windowStartMs: e.windowStartMs, windowEndMs: e.windowEndMs, gzipBody: body))
            }
            if !unreadable.isEmpty {
                s.drops.rejectedReports += unreadable.count
                s.entries.removeAll { unreadable.contains($0.seq) }
            }
            return out
        }
    }

    public var count: Int { state.withLock { $0.entries.count } }
    public var bytesOnDisk: Int { state.withLock { $0.segments.reduce(0) { $0 + $1.bytes } } }
    /// Bytes this process wrote to the spool (records only; the file system adds its metadata).
    public var bytesWritten: UInt64 { state.withLock { $0.bytesWritten } }

    // MARK: Bounds

    private func dropExpired(_ s: inout State, nowMs: Int64) {
        let cutoff = nowMs - maxAgeMilliseconds
        var n = 0
        while n < s.entries.count, s.entries[n].windowEndMs < cutoff { n += 1 }
        guard n > 0 else { return }
        dropPrefix(&s, count: n)
        try? Self.writeMark(&s, sync: false)
        Self.deleteFinishedSegments(&s, directory: directory)
    }

    /// Drops the oldest segment whole (its unsent windows counted) to make room.
    private func dropOldestSegment(_ s: inout State) {
        let oldest = s.segments[0]
        let n = s.entries.prefix { $0.segment == oldest.number }.count
        dropPrefix(&s, count: n)
        s.doneThrough = max(s.doneThrough, oldest.maxSeq)
        unlink(Self.path(directory, oldest.number))
        s.segments.removeFirst()
        try? Self.writeMark(&s, sync: false)
    }

    private func dropPrefix(_ s: inout State, count n: Int) {
        guard n > 0 else { return }
        let gone = s.entries[..<n]
        s.drops.droppedReports += n
        s.drops.firstDroppedStartMs = min(s.drops.firstDroppedStartMs ?? .max, gone.first!.windowStartMs)
        s.drops.lastDroppedEndMs = max(s.drops.lastDroppedEndMs ?? .min, gone.last!.windowEndMs)
        s.doneThrough = max(s.doneThrough, gone.last!.seq)
        s.entries.removeFirst(n)
    }

    /// Deletes every segment but the active one whose reports are all done.
    private static func deleteFinishedSegments(_ s: inout State, directory: String) {
        while s.segments.count > 1, s.segments[0].maxSeq <= s.doneThrough {
            unlink(path(directory, s.segments[0].number))
            s.segments.removeFirst()
        }
    }

    // MARK: Files

    private static func startSegment(_ s: inout State, number: UInt64, directory: String) throws(AgentError) {
        let p = path(directory, number)
        let fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AgentError(.spool, "cannot create \(p): \(String(cString: strerror(errno)))", errno: errno) }
        if s.fd >= 0 { close(s.fd) }
        s.fd = fd
        s.segments.append(Segment(number: number, bytes: 0, maxSeq: 0))
        // The new segment starts with the state, so older segments can go; the directory entry is synced so
        // the segment survives a power cut.
        try writeMark(&s, sync: true)
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = Glibc.fsync(dfd); close(dfd) }
    }

    private static func writeMark(_ s: inout State, sync: Bool) throws(AgentError) {
        try writeAll(&s, record(kind: kindMark, a: s.doneThrough, b: s.lastSeq, c: 0, payload: []), sync: sync)
    }

    /// Appends `record` to the active segment; on a short or failed write the file is cut back.
    private static func writeAll(_ s: inout State, _ record: [UInt8], sync: Bool) throws(AgentError) {
        let before = s.segments[s.segments.count - 1].bytes
        var done = 0
        var failure: Int32 = 0
        record.withUnsafeBytes { raw in
            while done < raw.count {
                let n = write(s.fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                done += n
            }
        }
        if failure == 0, sync, fdatasync(s.fd) != 0 { failure = errno }
        guard failure == 0 else {
            _ = ftruncate(s.fd, off_t(before))
            throw AgentError(.spool, "cannot write the spool: \(String(cString: strerror(failure)))", errno: failure)
        }
        s.segments[s.segments.count - 1].bytes = before + record.count
        s.bytesWritten += UInt64(record.count)
    }

    static func record(kind: UInt8, a: UInt64, b: UInt64, c: UInt64, payload: [UInt8]) -> [UInt8] {
        var r = [UInt8](repeating: 0, count: headerBytes + payload.count)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, byte) in $0.enumerated() { r[at + i] = byte } }
        }
        put(magic, 0)
        r[4] = kind
        put(UInt32(payload.count), 8)
        put(a, 12)
        put(b, 20)
        put(c, 28)
        r.replaceSubrange(headerBytes..., with: payload)
        let crc = r.withUnsafeBytes { raw in
            CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[headerBytes...]), continuing: CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[4..<36])))
        }
        put(crc, 36)
        return r
    }

    struct Parsed {
        var kind: UInt8
        var length: Int
        var a: UInt64, b: UInt64, c: UInt64
    }

    /// The record at `offset`, or nil when it is short, not a record, or fails its checksum.
    static func parseRecord(_ bytes: [UInt8], at offset: Int) -> Parsed? {
        guard bytes.count - offset >= headerBytes else { return nil }
        func get<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { for i in 0..<MemoryLayout<T>.size { $0[i] = bytes[offset + at + i] } }
            return T(littleEndian: v)
        }
        guard get(UInt32.self, 0) == magic else { return nil }
        let kind = bytes[offset + 4]
        guard kind == kindReport || kind == kindMark else { return nil }
        let length = Int(get(UInt32.self, 8))
        guard bytes.count - offset - headerBytes >= length else { return nil }
        let crc = bytes.withUnsafeBytes { raw in
            CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[(offset + headerBytes)..<(offset + headerBytes + length)]),
                           continuing: CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[(offset + 4)..<(offset + 36)])))
        }
        guard crc == get(UInt32.self, 36) else { return nil }
        return Parsed(kind: kind, length: length, a: get(UInt64.self, 12), b: get(UInt64.self, 20), c: get(UInt64.self, 28))
    }

    static func path(_ directory: String, _ number: UInt64) -> String {
        let digits = String(number)
        return directory + "/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    static func segmentNumbers(in directory: String) throws(AgentError) -> [UInt64] {
        guard let dir = opendir(directory) else {
            throw AgentError(.spool, "cannot list \(directory): \(String(cString: strerror(errno)))", errno: errno)
        }
        defer { closedir(dir) }
        var numbers: [UInt64] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasSuffix(".seg"), let n = UInt64(name.dropLast(4)) else { continue }
            numbers.append(n)
        }
        return numbers.sorted()
    }

    static func readFile(_ path: String) throws(AgentError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError(.spool, "cannot open \(path): \(String(cString: strerror(errno)))", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AgentError(.spool, "cannot stat \(path): \(String(cString: strerror(errno)))", errno: errno) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return Array(bytes[..<done])
    }

    static func readRange(_ path: String, offset: Int, length: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: length)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
        return n == length ? bytes : nil
    }
}
