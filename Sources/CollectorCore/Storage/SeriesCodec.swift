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
/// Format 3 holds format 2's string table, shapes and flags, then the values column by column (every
/// count; for min, max, mean, last and sum every tag, then the numbers' bytes; the sketches' α values, zero
/// counts, bucket counts, indices and bucket values).
///
/// Codec 1 is format 1 compressed with zstd alone; codec 2 format 1 with built-in zstd dictionary 1;
/// codec 3 format 2 with dictionary 2 (``PayloadDictionaries``), the dictionary id in the frame; codec 4
/// (what is written now) format 3 with dictionary 3 at zstd level 6 in a bare frame, without magic number
/// or id. A dictionary holds what every report repeats (metric names, units, label keys, the shape
/// of the encoding), so a row's payload carries little more than its values.
public enum SeriesCodec {
    public static let currentCodec = 4
    /// The encoding ``currentCodec`` compresses.
    public static let currentFormat: UInt8 = 3

    public struct DecodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compression failed (zstd's reason), or a codec this collector does not write was asked for.
    public struct EncodingFailure: Error, CustomStringConvertible {
        public let description: String
    }

    // MARK: Encoding

    /// The uncompressed encoding of `series` in `format` (1, 2 or 3).
    public static func encode(_ series: [Series], format: UInt8 = currentFormat) -> [UInt8] {
        switch format {
        case 1: encodeFormat1(series)
        case 2: encodeFormat2(series)
        case 3: encodeFormat3(series)
        default: preconditionFailure("series payload format \(format) does not exist (1, 2 and 3 do)")
        }
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
            let flags = Format2Flags(of: s)
            structure.append(flags.rawValue)
            if !flags.contains(.countIsSketchTotal) { varint(UInt64(s.count), &values) }
            number2(s.min, &values)
            if !flags.contains(.maxIsMin) { number2(s.max, &values) }
            if flags.contains(.meanStored) { number2(s.mean, &values) }
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

    /// Format 3: format 2's string table and shapes, then its values column by column: every series'
    /// count, then for each of min, max, mean, last and sum every series' number tags followed by the
    /// numbers' bytes, then the sketches' α values, zero counts, bucket counts, bucket indices and bucket
    /// counts. Like things side by side compress better: the tags of a column repeat, and a dictionary
    /// trained on the layout knows where each column starts.
    static func encodeFormat3(_ series: [Series]) -> [UInt8] {
        var table = StringTable()
        var columns = Format3Columns(capacity: series.count)
        columns.structure.reserveCapacity(series.count * 8)
        for s in series {
            table.writeShape(of: s, to: &columns.structure)
            let flags = Format2Flags(of: s)
            columns.structure.append(flags.rawValue)
            if !flags.contains(.countIsSketchTotal) { varint(UInt64(s.count), &columns.counts) }
            columns.number(s.min, column: 0)
            if !flags.contains(.maxIsMin) { columns.number(s.max, column: 1) }
            if flags.contains(.meanStored) { columns.number(s.mean, column: 2) }
            if !flags.contains(.lastIsMin) && !flags.contains(.lastIsMax) { columns.number(s.last, column: 3) }
            columns.number(s.sum, column: 4)
            if let sk = s.sketch {
                if flags.contains(.alphaStored) { float64(sk.relativeAccuracy, &columns.alphas) }
                varint(sk.zeroCount, &columns.zeroCounts)
                for store in [sk.positiveStore, sk.negativeStore] {
                    varint(UInt64(store.count), &columns.bucketCounts)
                    bucketIndices(store, &columns.bucketIndices)
                    for b in store { varint(b.count, &columns.bucketValues) }
                }
            }
        }
        var out: [UInt8] = [3]
        out.reserveCapacity(columns.byteCount + table.strings.count * 16 + 4)
        varint(UInt64(series.count), &out)
        table.write(to: &out)
        columns.append(to: &out)
        return out
    }

    /// The columns of a format-3 payload while it is written.
    struct Format3Columns {
        var structure: [UInt8] = []
        var counts: [UInt8] = []
        /// min, max, mean, last, sum: each column's tags, then its numbers' bytes.
        var tags: [[UInt8]]
        var numbers: [[UInt8]]
        var alphas: [UInt8] = []
        var zeroCounts: [UInt8] = []
        var bucketCounts: [UInt8] = []
        var bucketIndices: [UInt8] = []
        var bucketValues: [UInt8] = []

        init(capacity: Int) {
            tags = Array(repeating: [], count: 5)
            numbers = Array(repeating: [], count: 5)
            for i in 0..<5 {
                tags[i].reserveCapacity(capacity)
                numbers[i].reserveCapacity(capacity * 3)
            }
        }

        mutating func number(_ d: Double, column: Int) {
            let n = SeriesCodec.Number(format2: d)
            tags[column].append(n.tag)
            n.writeBody(&numbers[column])
        }

        var byteCount: Int {
            structure.count + counts.count + tags.reduce(0) { $0 + $1.count } + numbers.reduce(0) { $0 + $1.count } + alphas.count
                + zeroCounts.count + bucketCounts.count + bucketIndices.count + bucketValues.count
        }

        func append(to out: inout [UInt8]) {
            out += structure
            out += counts
            for i in 0..<5 {
                out += tags[i]
                out += numbers[i]
            }
            out += alphas
            out += zeroCounts
            out += bucketCounts
            out += bucketIndices
            out += bucketValues
        }
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

        /// A series' shape as every format writes it: metric, unit, label count, then (key, value) index
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

        /// Count, then each string as length + UTF-8 bytes (every format).
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

        init(rawValue: UInt8) { self.rawValue = rawValue }

        /// What `s` stores and what its other values imply (formats 2 and 3).
        init(of s: Series) {
            var flags = Format2Flags()
            let meanDerived = s.count > 0 && (s.sum / Double(s.count)).bitPattern == s.mean.bitPattern
            if !meanDerived { flags.insert(.meanStored) }
            if let sk = s.sketch {
                flags.insert(.sketch)
                if sk.relativeAccuracy != QuantileSketch.defaultRelativeAccuracy { flags.insert(.alphaStored) }
                if let total = SeriesCodec.sketchTotal(sk), total == UInt64(s.count) { flags.insert(.countIsSketchTotal) }
            }
            if s.max.bitPattern == s.min.bitPattern { flags.insert(.maxIsMin) }
            if s.last.bitPattern == s.min.bitPattern {
                flags.insert(.lastIsMin)
            } else if s.last.bitPattern == s.max.bitPattern {
                flags.insert(.lastIsMax)
            }
            self = flags
        }

        /// Flags a format-2 or format-3 payload may hold; `at` names the byte in the error.
        func validated(at: Int) throws -> Format2Flags {
            guard Format2Flags.known.isSuperset(of: self), !isSuperset(of: [.lastIsMin, .lastIsMax]),
                  contains(.sketch) || isDisjoint(with: [.alphaStored, .countIsSketchTotal]) else {
                throw DecodingFailure(description: "series flags \(rawValue) at byte \(at) are not a valid combination")
            }
            return self
        }
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
    /// dictionary 1; 3: format 2, zstd level 3 with dictionary 2; 4: format 3, zstd level 6 with dictionary 3
    /// in a bare frame).
    public static func compress(_ series: [Series], codec: Int) throws -> [UInt8] {
        switch codec {
        case 1:
            let raw = encode(series, format: 1)
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count))
            let n = out.withUnsafeMutableBytes { o in raw.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, o.count, i.baseAddress, i.count, 3) } }
            guard ZSTD_isError(n) == 0 else { throw EncodingFailure(description: "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            return Array(out[..<n])
        case 2, 3, 4:
            return try PayloadDictionaries.all[codec - 2].compress(encode(series, format: UInt8(codec - 1)))
        default:
            throw EncodingFailure(description: "unknown storage codec \(codec); this collector writes 1 to 4")
        }
    }

    /// The series of a stored payload of `codec`.
    public static func decompress(_ payload: [UInt8], codec: Int, seriesCount: Int) throws -> [Series] {
        let raw: [UInt8]
        switch codec {
        case 1:
            let size = try frameSize(payload, bare: false)
            var out = [UInt8](repeating: 0, count: size)
            let n = out.withUnsafeMutableBytes { o in payload.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, o.count, i.baseAddress, i.count) } }
            guard ZSTD_isError(n) == 0, n == out.count else { throw DecodingFailure(description: "stored payload does not decompress") }
            raw = out
        case 2, 3:
            // The frame names its dictionary.
            let size = try frameSize(payload, bare: false)
            let id = PayloadDictionaries.dictionaryID(ofFrame: payload)
            guard let dictionary = PayloadDictionaries.dictionary(id: id) else {
                throw DecodingFailure(description: "stored payload needs zstd dictionary \(id), which this collector does not have (it has \(PayloadDictionaries.all.map { String($0.id) }.joined(separator: ", ")))")
            }
            raw = try dictionary.decompress(payload, size: size)
        case 4:
            // A bare frame: the codec names the dictionary.
            let dictionary = PayloadDictionaries.all[2]
            raw = try dictionary.decompress(payload, size: try frameSize(payload, bare: true))
        default:
            throw DecodingFailure(description: "unknown storage codec \(codec); this collector reads 1 to 4")
        }
        let series = try decode(raw)
        guard series.count == seriesCount else { throw DecodingFailure(description: "payload holds \(series.count) series, the row says \(seriesCount)") }
        return series
    }

    /// The content size in the header of a standard or bare frame, within 64 MiB.
    static func frameSize(_ payload: [UInt8], bare: Bool) throws -> Int {
        guard let size = PayloadDictionaries.contentSize(ofFrame: payload, bare: bare), size < 64 << 20 else {
            throw DecodingFailure(description: "stored payload is not a zstd frame with its size")
        }
        return Int(size)
    }

    // MARK: Decoding

    /// The series of an uncompressed payload, of any format (its first byte).
    public static func decode(_ bytes: [UInt8]) throws -> [Series] {
        var r = Reader(bytes: bytes)
        switch try r.byte() {
        case 1: return try decodeFormat1(&r)
        case 2: return try decodeFormat2(&r)
        case 3: return try decodeFormat3(&r)
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

    typealias Shape = (metric: String, unit: String, labels: [String: String], flags: Format2Flags)

    /// Formats 2 and 3: every series' metric, unit, labels and flags.
    static func shapes(_ r: inout Reader, count: Int, table: [String]) throws -> [Shape] {
        var shapes: [Shape] = []
        shapes.reserveCapacity(count)
        for _ in 0..<count {
            let (metric, unit, labels) = try r.shape(in: table)
            let at = r.offset
            shapes.append((metric, unit, labels, try Format2Flags(rawValue: try r.byte()).validated(at: at)))
        }
        return shapes
    }

    /// A sketch as read, checked: α in range and, when the count is the sketch's total, that total.
    static func sketch(alpha: Double, zero: UInt64, positive: [QuantileSketch.Bucket], negative: [QuantileSketch.Bucket],
                       flags: Format2Flags, count: inout Int, before offset: Int) throws -> QuantileSketch {
        guard alpha.isFinite, alpha >= 0.0001, alpha < 0.5 else { throw DecodingFailure(description: "sketch alpha \(alpha) out of range") }
        let sk = QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, ascending: positive, ascendingNegative: negative)
        if flags.contains(.countIsSketchTotal) {
            guard let total = sketchTotal(sk), total <= UInt64(Int.max) else {
                throw DecodingFailure(description: "sketch total out of range before byte \(offset)")
            }
            count = Int(total)
        }
        return sk
    }

    static func decodeFormat2(_ r: inout Reader) throws -> [Series] {
        let count = try r.int(limit: 100_000)
        let table = try stringTable(&r)
        let shapes = try shapes(&r, count: count, table: table)
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
                let zero = try r.varint()
                let pos = try r.buckets(), neg = try r.buckets()
                sketch = try Self.sketch(alpha: alpha, zero: zero, positive: pos, negative: neg, flags: flags, count: &n, before: r.offset)
            }
            out.append(Series(metric: shape.metric, unit: shape.unit, labels: shape.labels, count: n, min: min, max: max,
                              mean: storedMean ?? (sum / Double(n)), last: last, sum: sum, sketch: sketch))
        }
        guard r.atEnd else { throw DecodingFailure(description: "series payload has trailing bytes") }
        return out
    }

    /// Format 3: the shapes, then each column in the order ``encodeFormat3(_:)`` writes them.
    static func decodeFormat3(_ r: inout Reader) throws -> [Series] {
        let count = try r.int(limit: 100_000)
        let table = try stringTable(&r)
        let shapes = try shapes(&r, count: count, table: table)
        var counts: [Int] = []
        for shape in shapes where !shape.flags.contains(.countIsSketchTotal) { counts.append(try r.int(limit: Int.max)) }
        /// One number column: the tags of the series that store it, then their numbers' bytes.
        func column(_ stored: (Format2Flags) -> Bool) throws -> [Double] {
            let n = shapes.reduce(0) { stored($1.flags) ? $0 + 1 : $0 }
            let tagsAt = r.offset
            let tags = try r.take(n)
            var values: [Double] = []
            values.reserveCapacity(n)
            for (i, tag) in tags.enumerated() { values.append(try r.numberBody(tag: tag, tagAt: tagsAt + i)) }
            return values
        }
        let mins = try column { _ in true }
        let maxes = try column { !$0.contains(.maxIsMin) }
        let means = try column { $0.contains(.meanStored) }
        let lasts = try column { $0.isDisjoint(with: [.lastIsMin, .lastIsMax]) }
        let sums = try column { _ in true }
        var alphas: [Double] = []
        for shape in shapes where shape.flags.contains(.alphaStored) { alphas.append(try r.float64()) }
        let sketches = shapes.reduce(0) { $1.flags.contains(.sketch) ? $0 + 1 : $0 }
        var zeros: [UInt64] = []
        zeros.reserveCapacity(sketches)
        for _ in 0..<sketches { zeros.append(try r.varint()) }
        var sizes: [Int] = []
        sizes.reserveCapacity(sketches * 2)
        for _ in 0..<(sketches * 2) { sizes.append(try r.int(limit: QuantileSketch.maxBuckets)) }
        var indices: [[Int32]] = []
        indices.reserveCapacity(sizes.count)
        for n in sizes { indices.append(try r.bucketIndices(n)) }
        var stores: [[QuantileSketch.Bucket]] = []
        stores.reserveCapacity(indices.count)
        for keys in indices { stores.append(try r.bucketCounts(keys)) }
        guard r.atEnd else { throw DecodingFailure(description: "series payload has trailing bytes") }

        var out: [Series] = []
        out.reserveCapacity(count)
        var next = (count: 0, max: 0, mean: 0, last: 0, alpha: 0, sketch: 0)
        for (i, shape) in shapes.enumerated() {
            let flags = shape.flags
            var n = 0
            if !flags.contains(.countIsSketchTotal) {
                n = counts[next.count]
                next.count += 1
            }
            let min = mins[i]
            var max = min
            if !flags.contains(.maxIsMin) {
                max = maxes[next.max]
                next.max += 1
            }
            var storedMean: Double?
            if flags.contains(.meanStored) {
                storedMean = means[next.mean]
                next.mean += 1
            }
            var last: Double
            if flags.contains(.lastIsMin) {
                last = min
            } else if flags.contains(.lastIsMax) {
                last = max
            } else {
                last = lasts[next.last]
                next.last += 1
            }
            var sketch: QuantileSketch?
            if flags.contains(.sketch) {
                var alpha = QuantileSketch.defaultRelativeAccuracy
                if flags.contains(.alphaStored) {
                    alpha = alphas[next.alpha]
                    next.alpha += 1
                }
                let k = next.sketch
                next.sketch += 1
                sketch = try Self.sketch(alpha: alpha, zero: zeros[k], positive: stores[2 * k], negative: stores[2 * k + 1],
                                         flags: flags, count: &n, before: r.offset)
            }
            out.append(Series(metric: shape.metric, unit: shape.unit, labels: shape.labels, count: n, min: min, max: max,
                              mean: storedMean ?? (sums[i] / Double(n)), last: last, sum: sums[i], sketch: sketch))
        }
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

    /// A *number* as the payload writes it: a tag byte and the bytes the tag says follow (docs/storage.md).
    struct Number {
        /// 0 +0.0; 1 non-negative integer and 2 negative integer (varint of the magnitude); 3 float32;
        /// 4 float64; 5–13 a decimal with tag − 4 fractional digits (zigzag varint mantissa; formats 2 and 3).
        let tag: UInt8
        let bits: UInt64

        init(tag: UInt8, bits: UInt64) {
            self.tag = tag
            self.bits = bits
        }

        /// Format 1's number: zero, an integer, a float32 when exact, else a float64.
        init(format1 d: Double) {
            if d == 0, d.sign == .plus {
                (tag, bits) = (0, 0)
            } else if d == d.rounded(), Swift.abs(d) < 9.0e15 {
                (tag, bits) = (d.sign == .plus ? 1 : 2, UInt64(Swift.abs(d)))
            } else if Double(Float(d)).bitPattern == d.bitPattern {
                (tag, bits) = (3, UInt64(Float(d).bitPattern))
            } else {
                (tag, bits) = (4, d.bitPattern)
            }
        }

        /// Formats 2 and 3: as format 1, and a decimal (tag 4 + k, zigzag mantissa) when one with at most
        /// nine fractional digits gives the value back bit for bit.
        init(format2 d: Double) {
            if d == 0 || (d == d.rounded() && Swift.abs(d) < 9.0e15) {
                self.init(format1: d)
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
                    self.init(tag: UInt8(4 + k), bits: zigzag)
                    return
                }
            }
            self.init(format1: d)
        }

        /// The bytes after the tag.
        func writeBody(_ out: inout [UInt8]) {
            switch tag {
            case 0: break
            case 3: withUnsafeBytes(of: UInt32(truncatingIfNeeded: bits).littleEndian) { out += $0 }
            case 4: withUnsafeBytes(of: bits.littleEndian) { out += $0 }
            default: varint(bits, &out)
            }
        }
    }

    static func number(_ d: Double, _ out: inout [UInt8]) {
        let n = Number(format1: d)
        out.append(n.tag)
        n.writeBody(&out)
    }

    /// 10^k for the decimal numbers of formats 2 and 3; every one is exact in a Double.
    static let powersOfTen: [Double] = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]

    /// A format-2 number (``Number/init(format2:)``): its tag, then its bytes.
    static func number2(_ d: Double, _ out: inout [UInt8]) {
        let n = Number(format2: d)
        out.append(n.tag)
        n.writeBody(&out)
    }

    /// One store of a sketch, ascending (as ``QuantileSketch`` keeps it): the count, the first index
    /// zigzagged and every later one as its gap to the one before, then the counts.
    static func buckets(_ store: [QuantileSketch.Bucket], _ out: inout [UInt8]) {
        varint(UInt64(store.count), &out)
        bucketIndices(store, &out)
        for b in store { varint(b.count, &out) }
    }

    /// A store's indices: the first zigzagged, every later one as its gap to the one before.
    static func bucketIndices(_ store: [QuantileSketch.Bucket], _ out: inout [UInt8]) {
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

        /// Format 1's number: a tag of 0–4 and its bytes.
        mutating func number() throws -> Double {
            let tag = try byte()
            guard tag <= 4 else { throw DecodingFailure(description: "unknown number tag \(tag) at byte \(offset - 1)") }
            return try numberBody(tag: tag, tagAt: offset - 1)
        }

        /// A format-2 number: a tag of 0–13 and its bytes.
        mutating func number2() throws -> Double {
            let tag = try byte()
            return try numberBody(tag: tag, tagAt: offset - 1)
        }

        /// The bytes of a number whose tag (at byte `tagAt`, for the error) was read already: in front of
        /// them (formats 1 and 2) or in its column's tags (format 3).
        mutating func numberBody(tag: UInt8, tagAt: Int) throws -> Double {
            switch tag {
            case 0: return 0
            case 1: return Double(try varint())
            case 2: return -Double(try varint())
            case 3:
                var bits: UInt32 = 0
                for (i, b) in try take(4).enumerated() { bits |= UInt32(b) << (8 * UInt32(i)) }
                return Double(Float(bitPattern: bits))
            case 4: return try float64()
            case 5...13:
                let z = try varint()
                let m = Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1)))
                guard m.magnitude < 9_000_000_000_000_000 else {
                    throw DecodingFailure(description: "decimal out of range at byte \(offset)")
                }
                return Double(m) / SeriesCodec.powersOfTen[Int(tag) - 4]
            default: throw DecodingFailure(description: "unknown number tag \(tag) at byte \(tagAt)")
            }
        }

        mutating func string(in table: [String]) throws -> String {
            table[try int(limit: table.count - 1)]
        }

        /// A series' metric, unit and labels, each an index into the string table (every format).
        mutating func shape(in table: [String]) throws -> (metric: String, unit: String, labels: [String: String]) {
            let metric = try string(in: table), unit = try string(in: table)
            var labels: [String: String] = [:]
            for _ in 0..<(try int(limit: 64)) {
                let k = try string(in: table)
                labels[k] = try string(in: table)
            }
            return (metric, unit, labels)
        }

        /// A store as ``SeriesCodec/buckets(_:_:)`` writes it: strictly ascending, so a gap of zero (an
        /// index twice) is refused as the dictionary it used to fill could not hold it either.
        mutating func buckets() throws -> [QuantileSketch.Bucket] {
            let keys = try bucketIndices(try int(limit: QuantileSketch.maxBuckets))
            return try bucketCounts(keys)
        }

        /// `n` indices as ``SeriesCodec/bucketIndices(_:_:)`` writes them, strictly ascending.
        mutating func bucketIndices(_ n: Int) throws -> [Int32] {
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
            return keys
        }

        /// The buckets of `keys`, each with the count read next.
        mutating func bucketCounts(_ keys: [Int32]) throws -> [QuantileSketch.Bucket] {
            var out: [QuantileSketch.Bucket] = []
            out.reserveCapacity(keys.count)
            for k in keys { out.append(QuantileSketch.Bucket(index: k, count: try varint())) }
            return out
        }
    }
}
