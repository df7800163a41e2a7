import CZstd
import Foundation
import TelemetryModel

/// The collector's compact storage of one report's series of one data class: a binary encoding
/// (docs/storage.md, "Series payload"), compressed with zstd. Versioned by the `codec` column and by the
/// encoding's first byte; every version decodes forever (golden files in Tests/MeetpuntTests/Fixtures/storage).
///
/// Format 1, all integers LEB128 varints unless said otherwise:
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
///
/// Format 2 holds the same and leaves out what the rest implies:
/// - `2`, the series count, the string table as in format 1;
/// - every series' metric, unit, labels and flags first, then every series' values: like things side by
///   side compress better;
/// - more flag bits: 3 `max` is `min`, 4 `last` is `min`, 5 `last` is `max` (bit for bit; the value is
///   then not written), 6 `count` is the sketch's total (zero count and buckets) and is not written;
/// - numbers may also be decimals: tag 4 + k (k = 1…9) and a zigzag varint m, the value being
///   `Double(m) / 10^k`, used only when that division gives the value back bit for bit (a rate of
///   14643533.6 takes 5 bytes, not 9).
///
/// Codec 1 is format 1 compressed with zstd alone; codec 2 format 1 with built-in zstd dictionary 1;
/// codec 3 (what is written now) format 2 with dictionary 2 (``PayloadDictionaries``). The dictionary id is
/// in the frame. A dictionary holds what every report repeats (metric names, units, label keys, the shape
/// of the encoding), so a row's payload carries little more than its values.
public enum SeriesCodec {
    public static let currentCodec = 3
    /// The encoding ``currentCodec`` compresses.
    public static let currentFormat: UInt8 = 2

    public struct DecodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compression failed (zstd's reason), or a codec this collector does not write was asked for.
    public struct EncodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    // MARK: Encoding

    /// The uncompressed encoding of `series` in `format` (1 or 2).
    public static func encode(_ series: [Series], format: UInt8 = currentFormat) -> [UInt8] {
        format == 1 ? encodeFormat1(series) : encodeFormat2(series)
    }

    static func encodeFormat1(_ series: [Series]) -> [UInt8] {
        var table = StringTable()
        var body: [UInt8] = []
        body.reserveCapacity(series.count * 24)
        for s in series {
            table.writeShape(of: s, to: &body)
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
                buckets(sk.positiveStore, &body)
                buckets(sk.negativeStore, &body)
            }
        }
        var out: [UInt8] = [1]
        varint(UInt64(series.count), &out)
        table.write(to: &out)
        return out + body
    }

    /// Format 2: the string table, every series' structure, then every series' values.
    static func encodeFormat2(_ series: [Series]) -> [UInt8] {
        var table = StringTable()
        var structure: [UInt8] = []
        structure.reserveCapacity(series.count * 8)
        var values: [UInt8] = []
        values.reserveCapacity(series.count * 20)
        for s in series {
            table.writeShape(of: s, to: &structure)
            var flags = Format2Flags()
            let meanDerived = s.count > 0 && (s.sum / Double(s.count)).bitPattern == s.mean.bitPattern
            if !meanDerived { flags.insert(.meanStored) }
            if let sk = s.sketch {
                flags.insert(.sketch)
                if sk.relativeAccuracy != QuantileSketch.defaultRelativeAccuracy { flags.insert(.alphaStored) }
                if let total = sketchTotal(sk), total == UInt64(s.count) { flags.insert(.countIsSketchTotal) }
            }
            if s.max.bitPattern == s.min.bitPattern { flags.insert(.maxIsMin) }
            if s.last.bitPattern == s.min.bitPattern {
                flags.insert(.lastIsMin)
            } else if s.last.bitPattern == s.max.bitPattern {
                flags.insert(.lastIsMax)
            }
            structure.append(flags.rawValue)
            if !flags.contains(.countIsSketchTotal) { varint(UInt64(s.count), &values) }
            number2(s.min, &values)
            if !flags.contains(.maxIsMin) { number2(s.max, &values) }
            if !meanDerived { number2(s.mean, &values) }
            if !flags.contains(.lastIsMin) && !flags.contains(.lastIsMax) { number2(s.last, &values) }
            number2(s.sum, &values)
            if let sk = s.sketch {
                if flags.contains(.alphaStored) { float64(sk.relativeAccuracy, &values) }
                varint(sk.zeroCount, &values)
                buckets(sk.positiveStore, &values)
                buckets(sk.negativeStore, &values)
            }
        }
        var out: [UInt8] = [2]
        out.reserveCapacity(structure.count + values.count + table.strings.count * 16)
        varint(UInt64(series.count), &out)
        table.write(to: &out)
        return out + structure + values
    }

    /// `labels` in key order; most series have no label or one, which need no sorted copy.
    @inline(__always)
    static func forEachLabelInKeyOrder(_ labels: [String: String], _ body: (String, String) -> Void) {
        if labels.count <= 1 {
            for (k, v) in labels { body(k, v) }
        } else {
            for (k, v) in labels.sorted(by: { $0.key < $1.key }) { body(k, v) }
        }
    }

    /// The strings of a payload in order of first use, each written once and referred to by index.
    struct StringTable {
        private var indices: [String: Int] = [:]
        private(set) var strings: [String] = []
        /// The string last asked for at each place of a series' shape (metric, unit, then each label key
        /// by position): consecutive series mostly repeat them, and comparing with the last one costs less
        /// than hashing.
        private var lastMetric: (string: String, index: Int)?
        private var lastUnit: (string: String, index: Int)?
        private var lastKeys: [(string: String, index: Int)?] = []
        private var lastValues: [(string: String, index: Int)?] = []

        mutating func index(_ s: String) -> Int {
            if let i = indices[s] { return i }
            indices[s] = strings.count
            strings.append(s)
            return strings.count - 1
        }

        private mutating func index(_ s: String, after last: (string: String, index: Int)?) -> (string: String, index: Int) {
            if let last, last.string == s { return last }
            return (s, index(s))
        }

        /// A series' shape as both formats write it: metric, unit, label count, then (key, value) index
        /// pairs in key order.
        mutating func writeShape(of s: Series, to out: inout [UInt8]) {
            let metric = index(s.metric, after: lastMetric), unit = index(s.unit, after: lastUnit)
            lastMetric = metric
            lastUnit = unit
            varint(UInt64(metric.index), &out)
            varint(UInt64(unit.index), &out)
            varint(UInt64(s.labels.count), &out)
            var position = 0
            SeriesCodec.forEachLabelInKeyOrder(s.labels) { k, v in
                let seen = position < lastKeys.count
                let key = index(k, after: seen ? lastKeys[position] : nil), value = index(v, after: seen ? lastValues[position] : nil)
                if seen {
                    lastKeys[position] = key
                    lastValues[position] = value
                } else {
                    lastKeys.append(key)
                    lastValues.append(value)
                }
                varint(UInt64(key.index), &out)
                varint(UInt64(value.index), &out)
                position += 1
            }
        }

        /// Count, then each string as length + UTF-8 bytes (both formats).
        func write(to out: inout [UInt8]) {
            varint(UInt64(strings.count), &out)
            for s in strings {
                varint(UInt64(s.utf8.count), &out)
                out += s.utf8
            }
        }
    }

    /// Format 2's per-series flags.
    struct Format2Flags: OptionSet {
        let rawValue: UInt8
        static let meanStored = Format2Flags(rawValue: 1)
        static let sketch = Format2Flags(rawValue: 2)
        static let alphaStored = Format2Flags(rawValue: 4)
        static let maxIsMin = Format2Flags(rawValue: 8)
        static let lastIsMin = Format2Flags(rawValue: 16)
        static let lastIsMax = Format2Flags(rawValue: 32)
        static let countIsSketchTotal = Format2Flags(rawValue: 64)
        static let known = Format2Flags(rawValue: 127)
    }

    /// The values a sketch counts (zero count and every bucket), or nil if they overflow.
    static func sketchTotal(_ sk: QuantileSketch) -> UInt64? {
        var total = sk.zeroCount
        for b in sk.positiveStore {
            let (t, o) = total.addingReportingOverflow(b.count)
            if o { return nil }
            total = t
        }
        for b in sk.negativeStore {
            let (t, o) = total.addingReportingOverflow(b.count)
            if o { return nil }
            total = t
        }
        return total
    }

    /// `encode` compressed as ``currentCodec``: what the `payload` column holds.
    public static func compress(_ series: [Series]) throws -> [UInt8] {
        try compress(series, codec: currentCodec)
    }

    /// `series` encoded and compressed as `codec` (1: format 1, zstd level 3; 2: format 1, zstd level 3 with
    /// dictionary 1; 3: format 2, zstd level 3 with dictionary 2).
    public static func compress(_ series: [Series], codec: Int) throws -> [UInt8] {
        let raw = encode(series, format: codec == 3 ? 2 : 1)
        switch codec {
        case 1:
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count))
            let n = out.withUnsafeMutableBytes { o in raw.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, o.count, i.baseAddress, i.count, 3) } }
            guard ZSTD_isError(n) == 0 else { throw EncodingFailure(description: "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            return Array(out[..<n])
        case 2, 3:
            return try PayloadDictionaries.all[codec - 2].compress(raw)
        default:
            throw EncodingFailure(description: "unknown storage codec \(codec); this collector writes 1, 2 and 3")
        }
    }

    /// The series of a stored payload of `codec`.
    public static func decompress(_ payload: [UInt8], codec: Int, seriesCount: Int) throws -> [Series] {
        guard (1...3).contains(codec) else { throw DecodingFailure(description: "unknown storage codec \(codec); this collector reads 1, 2 and 3") }
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

    /// The series of an uncompressed payload, of either format (its first byte).
    public static func decode(_ bytes: [UInt8]) throws -> [Series] {
        var r = Reader(bytes: bytes)
        switch try r.byte() {
        case 1: return try decodeFormat1(&r)
        case 2: return try decodeFormat2(&r)
        case let f: throw DecodingFailure(description: "unknown series payload format \(f)")
        }
    }

    static func stringTable(_ r: inout Reader) throws -> [String] {
        let tableCount = try r.int(limit: 1_000_000)
        var table: [String] = []
        table.reserveCapacity(Swift.min(tableCount, 4096))
        for _ in 0..<tableCount {
            let n = try r.int(limit: 1 << 16)
            table.append(String(decoding: try r.take(n), as: UTF8.self))
        }
        return table
    }

    static func decodeFormat1(_ r: inout Reader) throws -> [Series] {
        let count = try r.int(limit: 100_000)
        let table = try stringTable(&r)
        var out: [Series] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let (metric, unit, labels) = try r.shape(in: table)
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
                sketch = QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, ascending: pos, ascendingNegative: neg)
            }
            out.append(Series(metric: metric, unit: unit, labels: labels, count: n, min: min, max: max,
                              mean: storedMean ?? (sum / Double(n)), last: last, sum: sum, sketch: sketch))
        }
        guard r.atEnd else { throw DecodingFailure(description: "series payload has trailing bytes") }
        return out
    }

    static func decodeFormat2(_ r: inout Reader) throws -> [Series] {
        let count = try r.int(limit: 100_000)
        let table = try stringTable(&r)
        var shapes: [(metric: String, unit: String, labels: [String: String], flags: Format2Flags)] = []
        shapes.reserveCapacity(count)
        for _ in 0..<count {
            let (metric, unit, labels) = try r.shape(in: table)
            let at = r.offset
            let flags = Format2Flags(rawValue: try r.byte())
            guard Format2Flags.known.isSuperset(of: flags), !flags.isSuperset(of: [.lastIsMin, .lastIsMax]),
                  flags.contains(.sketch) || flags.isDisjoint(with: [.alphaStored, .countIsSketchTotal]) else {
                throw DecodingFailure(description: "series flags \(flags.rawValue) at byte \(at) are not a valid combination")
            }
            shapes.append((metric, unit, labels, flags))
        }
        var out: [Series] = []
        out.reserveCapacity(count)
        for shape in shapes {
            let flags = shape.flags
            var n = flags.contains(.countIsSketchTotal) ? 0 : try r.int(limit: Int.max)
            let min = try r.number2()
            let max = flags.contains(.maxIsMin) ? min : try r.number2()
            let storedMean: Double? = flags.contains(.meanStored) ? try r.number2() : nil
            let last = flags.contains(.lastIsMin) ? min : flags.contains(.lastIsMax) ? max : try r.number2()
            let sum = try r.number2()
            var sketch: QuantileSketch?
            if flags.contains(.sketch) {
                let alpha = flags.contains(.alphaStored) ? try r.float64() : QuantileSketch.defaultRelativeAccuracy
                guard alpha.isFinite, alpha >= 0.0001, alpha < 0.5 else { throw DecodingFailure(description: "sketch alpha \(alpha) out of range") }
                let zero = try r.varint()
                let pos = try r.buckets(), neg = try r.buckets()
                let sk = QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, ascending: pos, ascendingNegative: neg)
                if flags.contains(.countIsSketchTotal) {
                    guard let total = sketchTotal(sk), total <= UInt64(Int.max) else {
                        throw DecodingFailure(description: "sketch total out of range before byte \(r.offset)")
                    }
                    n = Int(total)
                }
                sketch = sk
            }
            out.append(Series(metric: shape.metric, unit: shape.unit, labels: shape.labels, count: n, min: min, max: max,
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
        buckets(sk.positiveStore, &out)
        buckets(sk.negativeStore, &out)
        return out
    }

    public static func decodeSketch(_ bytes: [UInt8]) throws -> QuantileSketch {
        var r = Reader(bytes: bytes)
        let alpha = try r.float64()
        guard alpha.isFinite, alpha >= 0.0001, alpha < 0.5 else { throw DecodingFailure(description: "sketch alpha \(alpha) out of range") }
        let zero = try r.varint()
        let pos = try r.buckets(), neg = try r.buckets()
        guard r.atEnd else { throw DecodingFailure(description: "sketch has trailing bytes") }
        return QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, ascending: pos, ascendingNegative: neg)
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

    /// 10^k for the decimal numbers of format 2; every one is exact in a Double.
    static let powersOfTen: [Double] = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]

    /// A format-2 number: as ``number(_:_:)``, and a decimal (tag 4 + k, zigzag mantissa) when one with at
    /// most nine fractional digits gives the value back bit for bit.
    static func number2(_ d: Double, _ out: inout [UInt8]) {
        if d == 0 || (d == d.rounded() && Swift.abs(d) < 9.0e15) {
            number(d, &out)
            return
        }
        // A float32 takes 4 bytes: a decimal whose mantissa needs more is not shorter.
        let float32Exact = Double(Float(d)).bitPattern == d.bitPattern
        for k in 1...9 {
            let scaled = (d * powersOfTen[k]).rounded()
            guard Swift.abs(scaled) < 9.0e15 else { break }
            if (scaled / powersOfTen[k]).bitPattern == d.bitPattern {
                let m = Int64(scaled)
                let zigzag = UInt64(bitPattern: (m << 1) ^ (m >> 63))
                if float32Exact && zigzag >= 1 << 28 { break }  // five or more varint bytes
                out.append(UInt8(4 + k))
                varint(zigzag, &out)
                return
            }
        }
        number(d, &out)
    }

    /// One store of a sketch, ascending (as ``QuantileSketch`` keeps it): the count, the first index
    /// zigzagged and every later one as its gap to the one before, then the counts.
    static func buckets(_ store: [QuantileSketch.Bucket], _ out: inout [UInt8]) {
        varint(UInt64(store.count), &out)
        var previous: Int32 = 0
        for (i, b) in store.enumerated() {
            let k = b.index
            if i == 0 {
                varint(UInt64(UInt32(bitPattern: (k << 1) ^ (k >> 31))), &out)  // zigzag
            } else {
                varint(UInt64(Int64(k) - Int64(previous)), &out)
            }
            previous = k
        }
        for b in store { varint(b.count, &out) }
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
            // A negative limit admits nothing (an index into an empty string table).
            guard limit >= 0, v <= UInt64(limit) else { throw DecodingFailure(description: "value \(v) out of range at byte \(offset)") }
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

        mutating func string(in table: [String]) throws -> String {
            table[try int(limit: table.count - 1)]
        }

        /// A series' metric, unit and labels, each an index into the string table (both formats).
        mutating func shape(in table: [String]) throws -> (metric: String, unit: String, labels: [String: String]) {
            let metric = try string(in: table), unit = try string(in: table)
            var labels: [String: String] = [:]
            for _ in 0..<(try int(limit: 64)) {
                let k = try string(in: table)
                labels[k] = try string(in: table)
            }
            return (metric, unit, labels)
        }

        mutating func number2() throws -> Double {
            let tag = bytes.indices.contains(offset) ? bytes[offset] : 0
            guard (5...13).contains(tag) else { return try number() }
            offset += 1
            let z = try varint()
            let m = Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1)))
            guard m.magnitude < 9_000_000_000_000_000 else {
                throw DecodingFailure(description: "decimal out of range at byte \(offset)")
            }
            return Double(m) / SeriesCodec.powersOfTen[Int(tag) - 4]
        }

        /// A store as ``SeriesCodec/buckets(_:_:)`` writes it: strictly ascending, so a gap of zero (an
        /// index twice) is refused as the dictionary it used to fill could not hold it either.
        mutating func buckets() throws -> [QuantileSketch.Bucket] {
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
                    let delta = try varint()
                    guard delta <= UInt64(UInt32.max) else { throw DecodingFailure(description: "sketch index out of range") }
                    guard delta > 0 else { throw DecodingFailure(description: "sketch bucket index repeats") }
                    previous += Int64(delta)
                }
                guard previous >= Int64(Int32.min), previous <= Int64(Int32.max) else { throw DecodingFailure(description: "sketch index out of range") }
                keys.append(Int32(previous))
            }
            var out: [QuantileSketch.Bucket] = []
            out.reserveCapacity(n)
            for k in keys { out.append(QuantileSketch.Bucket(index: k, count: try varint())) }
            return out
        }
    }
}
