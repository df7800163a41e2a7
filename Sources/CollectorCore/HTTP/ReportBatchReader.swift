import TelemetryModel

/// Reads a report batch body (`{"reports": [...]}`, docs/protocol.md) without `JSONDecoder`, for the
/// shape agents send. `JSONDecoder` spent more than half of the collector's ingest CPU on its generic
/// decoding machinery; this reader goes over the bytes once.
///
/// It is a fast path, not a second definition of the format: it answers `nil` for anything it does not
/// read exactly as `JSONDecoder` would (an escape in a string, a key it does not know or sees twice,
/// a number in a form an integer field does not take, a sketch that breaks a rule, invalid UTF-8,
/// trailing bytes…), and the caller then decodes with `JSONDecoder`, which accepts or rejects the body
/// and names what is wrong. So every accepted body means the same on both paths, and every error message
/// is `JSONDecoder`'s (`ReportBatchReaderTests` compares the two, bit for bit, on generated and odd bodies).
public struct ReportBatchReader {
    private let base: UnsafePointer<UInt8>
    private let end: Int
    private var at = 0

    public enum Outcome: Equatable {
        case reports([Report])
        /// The body holds more than `maxReports` reports (counted as they are read; reading stopped there).
        case tooMany
        /// Not read: `JSONDecoder` decides.
        case undecided
    }

    /// The reports of `body`; stops at the `maxReports + 1`th report, so a body of many tiny reports costs
    /// no more than the limit allows.
    public static func read(_ body: [UInt8], maxReports: Int) -> Outcome {
        body.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return .undecided }
            var reader = ReportBatchReader(base: base, end: buffer.count, maxReports: maxReports)
            if let reports = reader.batch() { return .reports(reports) }
            return reader.overLimit ? .tooMany : .undecided
        }
    }

    /// `read` without a limit: the reports, or nil when `JSONDecoder` must decide (tests).
    public static func reports(_ body: [UInt8]) -> [Report]? {
        if case .reports(let r) = read(body, maxReports: .max) { return r }
        return nil
    }

    private let maxReports: Int
    private var overLimit = false

    private init(base: UnsafePointer<UInt8>, end: Int, maxReports: Int) {
        self.base = base
        self.end = end
        self.maxReports = maxReports
    }

    // MARK: The batch, a report, a series, a sketch

    private mutating func batch() -> [Report]? {
        var reports: [Report]?
        let ok = object { r, key in
            guard r.matches(key, "reports"), reports == nil else { return false }
            var list: [Report] = []
            guard r.array({ r in
                guard list.count < r.maxReports else {
                    r.overLimit = true
                    return false
                }
                guard let report = r.report() else { return false }
                list.append(report)
                return true
            }) else { return false }
            reports = list
            return true
        }
        skipWhitespace()
        guard ok, at == end else { return nil }
        return reports
    }

    private mutating func report() -> Report? {
        var schema: Int?, device: String?, seq: UInt64?, start: Int64?, finish: Int64?, epoch: UInt32?, version: String?
        var series: [Series]?, session: Int64?, sessionSeen = false
        let ok = object { r, key in
            if r.matches(key, "schema") {
                guard schema == nil, let v = r.int64(), let i = Int(exactly: v) else { return false }
                schema = i
            } else if r.matches(key, "device") {
                guard device == nil, let v = r.string() else { return false }
                device = v
            } else if r.matches(key, "seq") {
                guard seq == nil, let v = r.uint64() else { return false }
                seq = v
            } else if r.matches(key, "window_start_ms") {
                guard start == nil, let v = r.int64() else { return false }
                start = v
            } else if r.matches(key, "window_end_ms") {
                guard finish == nil, let v = r.int64() else { return false }
                finish = v
            } else if r.matches(key, "key_epoch") {
                guard epoch == nil, let v = r.uint64(), let e = UInt32(exactly: v) else { return false }
                epoch = e
            } else if r.matches(key, "agent_version") {
                guard version == nil, let v = r.string() else { return false }
                version = v
            } else if r.matches(key, "series") {
                guard series == nil else { return false }
                var list: [Series] = []
                guard r.array({ r in
                    guard let s = r.series() else { return false }
                    list.append(s)
                    return true
                }) else { return false }
                series = list
            } else if r.matches(key, "troubleshooting_session") {
                guard !sessionSeen else { return false }
                sessionSeen = true
                if r.null() { return true }
                guard let v = r.int64() else { return false }
                session = v
            } else {
                return false
            }
            return true
        }
        guard ok, let schema, let device, let seq, let start, let finish, let epoch, let version, let series else { return nil }
        return Report(device: device, seq: seq, windowStartMs: start, windowEndMs: finish, keyEpoch: epoch, agentVersion: version,
                      series: series, troubleshootingSession: session, schema: schema)
    }

    private mutating func series() -> Series? {
        var metric: String?, unit: String?, labels: [String: String]?, count: Int?
        var min: Double?, max: Double?, mean: Double?, last: Double?, sum: Double?
        var sketch: QuantileSketch?, sketchSeen = false
        let ok = object { r, key in
            if r.matches(key, "metric") {
                guard metric == nil, let v = r.string() else { return false }
                metric = v
            } else if r.matches(key, "unit") {
                guard unit == nil, let v = r.string() else { return false }
                unit = v
            } else if r.matches(key, "labels") {
                guard labels == nil else { return false }
                var map: [String: String] = [:]
                guard r.object({ r, key in
                    // Keys with escapes: JSONDecoder. A key seen twice ends the read (JSONDecoder decides), so
                    // what `updateValue` did to the map then does not matter.
                    guard let k = r.text(key), let v = r.string(), map.updateValue(v, forKey: k) == nil else { return false }
                    return true
                }) else { return false }
                labels = map
            } else if r.matches(key, "count") {
                guard count == nil, let v = r.int64(), let i = Int(exactly: v) else { return false }
                count = i
            } else if r.matches(key, "min") {
                guard min == nil, let v = r.double() else { return false }
                min = v
            } else if r.matches(key, "max") {
                guard max == nil, let v = r.double() else { return false }
                max = v
            } else if r.matches(key, "mean") {
                guard mean == nil, let v = r.double() else { return false }
                mean = v
            } else if r.matches(key, "last") {
                guard last == nil, let v = r.double() else { return false }
                last = v
            } else if r.matches(key, "sum") {
                guard sum == nil, let v = r.double() else { return false }
                sum = v
            } else if r.matches(key, "sketch") {
                guard !sketchSeen else { return false }
                sketchSeen = true
                if r.null() { return true }
                guard let s = r.sketch() else { return false }
                sketch = s
            } else {
                return false
            }
            return true
        }
        guard ok, let metric, let unit, let labels, let count, let min, let max, let mean, let last, let sum else { return nil }
        return Series(metric: metric, unit: unit, labels: labels, count: count, min: min, max: max, mean: mean, last: last, sum: sum, sketch: sketch)
    }

    /// The rules of `QuantileSketch.init(from:)`; a sketch that breaks one goes to `JSONDecoder` for its error.
    private mutating func sketch() -> QuantileSketch? {
        var alpha: Double?, zero: UInt64?
        var index: [Int32]?, count: [UInt64]?, negativeIndex: [Int32]?, negativeCount: [UInt64]?
        let ok = object { r, key in
            if r.matches(key, "alpha") {
                guard alpha == nil, let v = r.double() else { return false }
                alpha = v
            } else if r.matches(key, "zero") {
                guard zero == nil, let v = r.uint64() else { return false }
                zero = v
            } else if r.matches(key, "index") {
                guard index == nil, let v = r.int32s() else { return false }
                index = v
            } else if r.matches(key, "count") {
                guard count == nil, let v = r.uint64s() else { return false }
                count = v
            } else if r.matches(key, "neg_index") {
                guard negativeIndex == nil, let v = r.int32s() else { return false }
                negativeIndex = v
            } else if r.matches(key, "neg_count") {
                guard negativeCount == nil, let v = r.uint64s() else { return false }
                negativeCount = v
            } else {
                return false
            }
            return true
        }
        guard ok, let alpha, let zero, let index, let count, alpha.isFinite, alpha >= 0.0001, alpha < 0.5,
              index.count == count.count else { return nil }
        let negIndex = negativeIndex ?? [], negCount = negativeCount ?? []
        guard negIndex.count == negCount.count, index.count + negIndex.count <= QuantileSketch.maxBuckets else { return nil }
        guard let positive = QuantileSketch.ascendingStore(index, count),
              let negative = QuantileSketch.ascendingStore(negIndex, negCount) else { return nil }
        return QuantileSketch(relativeAccuracy: alpha, zeroCount: zero, ascending: positive, ascendingNegative: negative)
    }

    // MARK: JSON, the subset read here

    private static func isWhitespace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }
    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private mutating func skipWhitespace() {
        while at < end, Self.isWhitespace(base[at]) { at += 1 }
    }

    /// Consumes `c` after optional whitespace.
    private mutating func take(_ c: UInt8) -> Bool {
        skipWhitespace()
        guard at < end, base[at] == c else { return false }
        at += 1
        return true
    }

    /// `{ "key": value, … }`, calling `member` positioned at each value; false ends the read.
    private mutating func object(_ member: (inout ReportBatchReader, Range<Int>) -> Bool) -> Bool {
        guard take(0x7B) else { return false }
        if take(0x7D) { return true }
        while true {
            guard let key = rawString(), take(0x3A), member(&self, key) else { return false }
            if take(0x2C) { continue }
            return take(0x7D)
        }
    }

    /// `[ value, … ]`, calling `element` positioned at each value.
    private mutating func array(_ element: (inout ReportBatchReader) -> Bool) -> Bool {
        guard take(0x5B) else { return false }
        if take(0x5D) { return true }
        while true {
            guard element(&self) else { return false }
            if take(0x2C) { continue }
            return take(0x5D)
        }
    }

    private mutating func null() -> Bool {
        skipWhitespace()
        guard end - at >= 4, base[at] == 0x6E, base[at + 1] == 0x75, base[at + 2] == 0x6C, base[at + 3] == 0x6C else { return false }
        at += 4
        return true
    }

    /// The bytes between the quotes of a string with no escape and no control character (keys).
    private mutating func rawString() -> Range<Int>? {
        guard take(0x22) else { return nil }
        let start = at
        while at < end {
            let c = base[at]
            if c == 0x22 {
                at += 1
                return start..<(at - 1)
            }
            if c == 0x5C || c < 0x20 { return nil }
            at += 1
        }
        return nil
    }

    private func text(_ range: Range<Int>) -> String? {
        let bytes = UnsafeBufferPointer(start: base + range.lowerBound, count: range.count)
        // ASCII (nearly every string an agent sends) is valid UTF-8 as it is.
        if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        return String(validating: bytes, as: UTF8.self)
    }

    /// A string value: JSON's escapes are undone (`JSONEncoder` writes `/` as `\/`); a lone surrogate, a
    /// control character or invalid UTF-8 goes to `JSONDecoder`.
    private mutating func string() -> String? {
        guard take(0x22) else { return nil }
        let start = at
        while at < end, base[at] != 0x22, base[at] != 0x5C, base[at] >= 0x20 { at += 1 }
        guard at < end else { return nil }
        if base[at] == 0x22 {
            at += 1
            return text(start..<(at - 1))
        }
        guard base[at] == 0x5C else { return nil }
        var bytes = Array(UnsafeBufferPointer(start: base + start, count: at - start))
        while at < end {
            let c = base[at]
            if c == 0x22 {
                at += 1
                return String(validating: bytes, as: UTF8.self)
            }
            if c < 0x20 { return nil }
            if c != 0x5C {
                bytes.append(c)
                at += 1
                continue
            }
            guard at + 1 < end else { return nil }
            at += 2
            switch base[at - 1] {
            case 0x22: bytes.append(0x22)
            case 0x5C: bytes.append(0x5C)
            case 0x2F: bytes.append(0x2F)
            case 0x62: bytes.append(0x08)
            case 0x66: bytes.append(0x0C)
            case 0x6E: bytes.append(0x0A)
            case 0x72: bytes.append(0x0D)
            case 0x74: bytes.append(0x09)
            case 0x75:
                guard var scalar = hex4() else { return nil }
                if scalar >= 0xD800, scalar <= 0xDBFF {
                    guard end - at >= 2, base[at] == 0x5C, base[at + 1] == 0x75 else { return nil }
                    at += 2
                    guard let low = hex4(), low >= 0xDC00, low <= 0xDFFF else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00, scalar <= 0xDFFF {
                    return nil
                }
                guard let u = Unicode.Scalar(scalar) else { return nil }
                bytes += Array(String(Character(u)).utf8)
            default:
                return nil
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard end - at >= 4 else { return nil }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = base[at]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
            at += 1
        }
        return v
    }

    private func matches(_ range: Range<Int>, _ key: StaticString) -> Bool {
        guard range.count == key.utf8CodeUnitCount else { return false }
        let k = key.utf8Start
        for j in 0..<range.count where base[range.lowerBound + j] != k[j] { return false }
        return true
    }

    /// A JSON number's bytes; `integer` refuses a fraction or an exponent (and `-0`). A delimiter must follow
    /// within the body.
    private mutating func numberToken(integer: Bool) -> Range<Int>? {
        skipWhitespace()
        let start = at
        if at < end, base[at] == 0x2D { at += 1 }
        guard at < end else { return nil }
        if base[at] == 0x30 {
            at += 1
            if integer, base[start] == 0x2D { return nil }
        } else if Self.isDigit(base[at]) {
            while at < end, Self.isDigit(base[at]) { at += 1 }
        } else {
            return nil
        }
        if at < end, base[at] == 0x2E {
            guard !integer else { return nil }
            at += 1
            guard at < end, Self.isDigit(base[at]) else { return nil }
            while at < end, Self.isDigit(base[at]) { at += 1 }
        }
        if at < end, base[at] == 0x65 || base[at] == 0x45 {
            guard !integer else { return nil }
            at += 1
            if at < end, base[at] == 0x2B || base[at] == 0x2D { at += 1 }
            guard at < end, Self.isDigit(base[at]) else { return nil }
            while at < end, Self.isDigit(base[at]) { at += 1 }
        }
        guard at < end else { return nil }
        return start..<at
    }

    private mutating func int64() -> Int64? {
        guard let token = numberToken(integer: true) else { return nil }
        var i = token.lowerBound
        let negative = base[i] == 0x2D
        if negative { i += 1 }
        var magnitude: UInt64 = 0
        while i < token.upperBound {
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(base[i] - 0x30))
            guard !o1, !o2 else { return nil }
            magnitude = s
            i += 1
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return Int64(exactly: magnitude)
    }

    private mutating func uint64() -> UInt64? {
        skipWhitespace()
        guard at < end, base[at] != 0x2D, let token = numberToken(integer: true) else { return nil }
        var v: UInt64 = 0
        for i in token {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(base[i] - 0x30))
            guard !o1, !o2 else { return nil }
            v = s
        }
        return v
    }

    /// Converted by the standard library's correctly rounded parser, as `JSONDecoder` converts. Out of a
    /// double's range, above (infinite) or below (a non-zero number that rounds to zero, `1e-400`),
    /// `JSONDecoder` refuses the number: this reader leaves it to JSONDecoder
    /// (`ReportBatchReaderTests.edgeNumbersReadAsJSONDecoderReadsThem`).
    private mutating func double() -> Double? {
        guard let token = numberToken(integer: false) else { return nil }
        if let v = exactDouble(token) { return v }
        guard let text = text(token), let v = Double(text), v.isFinite else { return nil }
        if v == 0 {
            // Zero is read when written plainly (`0`, `-0.0`); a zero with an exponent, or any non-zero
            // digit that rounded to zero, goes to JSONDecoder (which refuses `-0.0e5` and `1e-400`).
            for i in token where base[i] == 0x65 || base[i] == 0x45 || (base[i] >= 0x31 && base[i] <= 0x39) { return nil }
        }
        return v
    }

    /// Powers of ten that a `Double` holds exactly.
    private static let exactPowersOfTen: [Double] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15]

    /// A number without an exponent and with at most 15 digits, converted without the text parser: its
    /// digits m (below 10^15, so a `Double` holds m exactly) divided by 10^k (exact too), one IEEE division,
    /// which is correctly rounded, so the result is the correctly rounded value `Double(String)` gives, bit
    /// for bit (Clinger's fast path). Agents write most values this way (integral values always); nil for
    /// the others, which go to the text parser.
    private func exactDouble(_ token: Range<Int>) -> Double? {
        var i = token.lowerBound
        let negative = base[i] == 0x2D
        if negative { i += 1 }
        var m: UInt64 = 0, digits = 0, fraction = 0
        while i < token.upperBound {
            let c = base[i]
            if c == 0x2E {
                fraction = token.upperBound - i - 1
            } else if Self.isDigit(c) {
                digits += 1
                guard digits <= 15 else { return nil }
                m = m &* 10 &+ UInt64(c &- 0x30)
            } else {
                return nil  // an exponent
            }
            i += 1
        }
        let v = Double(m) / Self.exactPowersOfTen[fraction]
        return negative ? -v : v
    }

    private mutating func int32s() -> [Int32]? {
        var out: [Int32] = []
        guard array({ r in
            guard let v = r.int64(), let i = Int32(exactly: v) else { return false }
            out.append(i)
            return true
        }) else { return nil }
        return out
    }

    private mutating func uint64s() -> [UInt64]? {
        var out: [UInt64] = []
        guard array({ r in
            guard let v = r.uint64() else { return false }
            out.append(v)
            return true
        }) else { return nil }
        return out
    }
}
