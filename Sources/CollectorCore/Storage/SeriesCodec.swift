import CZstd
import Foundation
import TelemetryModel

/// The collector's compact storage of one report's series of one data class: a binary encoding
/// (docs/storage.md, "Series payload"), compressed with zstd. Versioned by the `codec` column; every
/// version decodes forever (golden files in Tests/MeetpuntTests/Fixtures/storage).
///
/// Version 1 layout, all integers LEB128 varints unless said otherwise:
/// - `1` (format byte), the series count;
/// - a string table: count, then each string as length + UTF-8 bytes (metric names, units, label keys
///   and values, in order of first use);
/// - per series: metric, unit (string indices), label count, (key, value) index pairs sorted by key, a
///   flags byte (bit 0: mean is stored, not `sum / count`; bit 1: sketch present; bit 2: sketch α is not
///   0.01), count, then min, max, [mean], last, sum as *numbers*;
/// - a sketch: [α as float64], zero count, positive bucket count n, n indices (first zigzag, then
///   ascending deltas), n counts, then the same for negative buckets.
/// A *number* is a tag byte and its bytes: 0 zero, 1 non-negative integer (varint), 2 negative integer
/// (varint of its magnitude), 3 float32 (4 bytes, when exact), 4 float64 (8 bytes), little-endian.
/// Metric and unit strings repeat across reports: zstd (level 3) takes most of the rest.
///
/// Codec 1 is that encoding compressed with zstd alone; codec 2 (what is written now) compresses the same
/// encoding with a zstd dictionary built into the collector (``PayloadDictionaries``), whose id is in the
/// frame. The dictionary holds what every report repeats (metric names, units, label keys, the shape
/// of the encoding), so a row's payload carries little more than its values.
public enum SeriesCodec {
    public static let currentCodec = 2

    public struct DecodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compression failed (zstd's reason), or a codec this collector does not write was asked for.
    public struct EncodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    // MARK: Encoding

    public static func encode(_ series: [Series]) -> [UInt8] {
        var strings: [String: Int] = [:]
        var table: [String] = []
        func index(_ s: String) -> Int {
            if let i = strings[s] { return i }
            strings[s] = table.count
            table.append(s)
            return table.count - 1
        }
        var body: [UInt8] = []
        body.reserveCapacity(series.count * 24)
        for s in series {
            varint(UInt64(index(s.metric)), &body)
            varint(UInt64(index(s.unit)), &body)
            let labels = s.labels.sorted { $0.key < $1.key }
            varint(UInt64(labels.count), &body)
            for (k, v) in labels {
                varint(UInt64(index(k)), &body)
                varint(UInt64(index(v)), &body)
            }
            let meanDerived = s.count > 0 && (s.sum / Double(s.count)).bitPattern == s.mean.bitPattern
            var flags: UInt8 = meanDerived ? 0 : 1
            if let sk = s.sketch {
                flags |= 2
                if sk.relativeAccuracy != QuantileSketch.defaultRelativeAccuracy { flags |= 4 }
            }
            body.append(flags)
            varint(UInt64(s.count), &body)
            number(s.min, &body)
            number(s.max, &body)
            if !meanDerived { number(s.mean, &body) }
            number(s.last, &body)
            number(s.sum, &body)
            if let sk = s.sketch {
                if flags & 4 != 0 { float64(sk.relativeAccuracy, &body) }
                varint(sk.zeroCount, &body)
                buckets(sk.buckets, &body)
                buckets(sk.negativeBuckets, &body)
            }
        }
        var out: [UInt8] = [1]
        varint(UInt64(series.count), &out)
        varint(UInt64(table.count), &out)
        for s in table {
            varint(UInt64(s.utf8.count), &out)
            out += s.utf8
        }
        return out + body
    }

    /// `encode` compressed as ``currentCodec``: what the `payload` column holds.
    public static func compress(_ series: [Series]) throws -> [UInt8] {
        try compress(series, codec: currentCodec)
    }

    /// `encode` compressed as `codec` (1: zstd level 3; 2: zstd level 3 with the current built-in dictionary).
    public static func compress(_ series: [Series], codec: Int) throws -> [UInt8] {
        let raw = encode(series)
        switch codec {
        case 1:
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count))
            let n = out.withUnsafeMutableBytes { o in raw.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, o.count, i.baseAddress, i.count, 3) } }
            guard ZSTD_isError(n) == 0 else { throw EncodingFailure(description: "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            return Array(out[..<n])
        case 2:
            return try PayloadDictionaries.current.compress(raw)
        default:
            throw EncodingFailure(description: "unknown storage codec \(codec); this collector writes 1 and 2")
        }
    }

    /// The series of a stored payload of `codec`.
    public static func decompress(_ payload: [UInt8], codec: Int, seriesCount: Int) throws -> [Series] {
        guard codec == 1 || codec == 2 else { throw DecodingFailure(description: "unknown storage codec \(codec); this collector reads 1 and 2") }
        let size = payload.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size != ZSTD_CONTENTSIZE_ERROR, size != ZSTD_CONTENTSIZE_UNKNOWN, size < 64 << 20 else {
            throw DecodingFailure(description: "stored payload is not a zstd frame with its size")
        }
        let raw: [UInt8]
        if codec == 1 {
            var out = [UInt8](repeating: 0, count: Int(size))
            let n = out.withUnsafeMutableBytes { o in payload.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, o.count, i.baseAddress, i.count) } }
            guard ZSTD_isError(n) == 0, n == out.count else { throw DecodingFailure(description: "stored payload does not decompress") }
            raw = out
        } else {
            let id = PayloadDictionaries.dictionaryID(ofFrame: payload)
            guard let dictionary = PayloadDictionaries.dictionary(id: id) else {
                throw DecodingFailure(description: "stored payload needs zstd dictionary \(id), which this collector does not have (it has \(PayloadDictionaries.all.map { String($0.id) }.joined(separator: ", ")))")
            }
            raw = try dictionary.decompress(payload, size: Int(size))
        }
        let series = try decode(raw)
        guard series.count == seriesCount else { throw DecodingFailure(description: "payload holds \(series.count) series, the row says \(seriesCount)") }
        return series
    }

    // MARK: Decoding

    public static func decode(_ bytes: [UInt8]) throws -> [Series] {
        var r = Reader(bytes: bytes)
        guard try r.byte() == 1 else { throw DecodingFailure(description: "unknown series payload format") }
        let count = try r.int(limit: 100_000)
        let tableCount = try r.int(limit: 1_000_000)
        var table: [String] = []
        table.reserveCapacity(tableCount)
        for _ in 0..<tableCount {
            let n = try r.int(limit: 1 << 16)
            table.append(String(decoding: try r.take(n), as: UTF8.self))
        }
        func string(_ r: inout Reader) throws -> String {
            let i = try r.int(limit: table.count - 1)
            return table[i]
        }
        var out: [Series] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let metric = try string(&r), unit = try string(&r)
            var labels: [String: String] = [:]
            for _ in 0..<(try r.int(limit: 64)) {
                let k = try string(&r)
                labels[k] = try string(&r)
            }
            let flags = try r.byte()
            let n = try r.int(limit: Int.max)
            let min = try r.number(), max = try r.number()
            let storedMean: Double? = flags & 1 != 0 ? try r.number() : nil
            let last = try r.number(), sum = try r.number()
            var sketch: QuantileSketch?
            if flags & 2 != 0 {
                let alpha = flags & 4 != 0 ? try r.float64() : QuantileSketch.defaultRelativeAccuracy
                let zero = try r.varint()
                let pos = try r.buckets(), neg = try r.buckets()
                sketch = QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, buckets: pos, negativeBuckets: neg)
            }
            out.append(Series(metric: metric, unit: unit, labels: labels, count: n, min: min, max: max,
                              mean: storedMean ?? (sum / Double(n)), last: last, sum: sum, sketch: sketch))
        }
        guard r.atEnd else { throw DecodingFailure(description: "series payload has trailing bytes") }
        return out
    }

    // MARK: Sketches on their own (fleet aggregates)

    /// A sketch alone: α as float64, zero count, positive and negative buckets as in the series payload.
    public static func encodeSketch(_ sk: QuantileSketch) -> [UInt8] {
        var out: [UInt8] = []
        float64(sk.relativeAccuracy, &out)
        varint(sk.zeroCount, &out)
        buckets(sk.buckets, &out)
        buckets(sk.negativeBuckets, &out)
        return out
    }

    public static func decodeSketch(_ bytes: [UInt8]) throws -> QuantileSketch {
        var r = Reader(bytes: bytes)
        let alpha = try r.float64()
        guard alpha.isFinite, alpha >= 0.0001, alpha < 0.5 else { throw DecodingFailure(description: "sketch alpha \(alpha) out of range") }
        let zero = try r.varint()
        let pos = try r.buckets(), neg = try r.buckets()
        guard r.atEnd else { throw DecodingFailure(description: "sketch has trailing bytes") }
        return QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, buckets: pos, negativeBuckets: neg)
    }

    // MARK: Primitives

    static func varint(_ v: UInt64, _ out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func float64(_ d: Double, _ out: inout [UInt8]) {
        withUnsafeBytes(of: d.bitPattern.littleEndian) { out += $0 }
    }

    static func number(_ d: Double, _ out: inout [UInt8]) {
        if d == 0, d.sign == .plus {
            out.append(0)
        } else if d == d.rounded(), Swift.abs(d) < 9.0e15 {
            out.append(d.sign == .plus ? 1 : 2)
            varint(UInt64(Swift.abs(d)), &out)
        } else if Double(Float(d)).bitPattern == d.bitPattern {
            out.append(3)
            withUnsafeBytes(of: Float(d).bitPattern.littleEndian) { out += $0 }
        } else {
            out.append(4)
            float64(d, &out)
        }
    }

    static func buckets(_ b: [Int32: UInt64], _ out: inout [UInt8]) {
        let sorted = b.sorted { $0.key < $1.key }
        varint(UInt64(sorted.count), &out)
        var previous: Int32 = 0
        for (i, (k, _)) in sorted.enumerated() {
            if i == 0 {
                varint(UInt64(UInt32(bitPattern: (k << 1) ^ (k >> 31))), &out)  // zigzag
            } else {
                varint(UInt64(Int64(k) - Int64(previous)), &out)
            }
            previous = k
        }
        for (_, n) in sorted { varint(n, &out) }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0
        var atEnd: Bool { offset == bytes.count }

        mutating func byte() throws -> UInt8 {
            guard offset < bytes.count else { throw DecodingFailure(description: "series payload ends early at byte \(offset)") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, bytes.count - offset >= n else { throw DecodingFailure(description: "series payload ends early at byte \(offset)") }
            defer { offset += n }
            return bytes[offset..<(offset + n)]
        }

        mutating func varint() throws -> UInt64 {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let b = try byte()
                guard shift < 64 else { throw DecodingFailure(description: "varint too long at byte \(offset)") }
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
        }

        mutating func int(limit: Int) throws -> Int {
            let v = try varint()
            guard v <= UInt64(Swift.max(0, limit)) else { throw DecodingFailure(description: "value \(v) out of range at byte \(offset)") }
            return Int(v)
        }

        mutating func float64() throws -> Double {
            var bits: UInt64 = 0
            for (i, b) in try take(8).enumerated() { bits |= UInt64(b) << (8 * UInt64(i)) }
            return Double(bitPattern: bits)
        }

        mutating func number() throws -> Double {
            switch try byte() {
            case 0: return 0
            case 1: return Double(try varint())
            case 2: return -Double(try varint())
            case 3:
                var bits: UInt32 = 0
                for (i, b) in try take(4).enumerated() { bits |= UInt32(b) << (8 * UInt32(i)) }
                return Double(Float(bitPattern: bits))
            case 4: return try float64()
            case let t: throw DecodingFailure(description: "unknown number tag \(t) at byte \(offset - 1)")
            }
        }

        mutating func buckets() throws -> [Int32: UInt64] {
            let n = try int(limit: QuantileSketch.maxBuckets)
            var keys: [Int32] = []
            keys.reserveCapacity(n)
            var previous: Int64 = 0
            for i in 0..<n {
                if i == 0 {
                    let z = try varint()
                    guard z <= UInt64(UInt32.max) else { throw DecodingFailure(description: "sketch index out of range") }
                    previous = Int64(Int32(bitPattern: UInt32(z >> 1) ^ (0 &- UInt32(z & 1))))
                } else {
                    previous += Int64(try varint())
                }
                guard previous >= Int64(Int32.min), previous <= Int64(Int32.max) else { throw DecodingFailure(description: "sketch index out of range") }
                keys.append(Int32(previous))
            }
            var out: [Int32: UInt64] = [:]
            for k in keys { out[k] = try varint() }
            return out
        }
    }
}
