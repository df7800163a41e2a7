/// A report's wire form (docs/protocol.md), written directly: the same bytes `JSONEncoder` with
/// `.sortedKeys` writes for ``Report``'s `Codable` conformance, at a fraction of its cost (the load
/// generator spent two thirds of its time in `JSONEncoder`, more than the collector spent storing the
/// reports). `Codable` stays the definition; `ReportBatchReaderTests` holds the two byte for byte equal
/// over the golden reports and seeded random ones.
///
/// Keys come in sorted order (label keys by their UTF-8 bytes, as `JSONEncoder` sorts them), optional members are left out when nil, a number is written as Swift
/// prints it with a trailing `.0` dropped, and strings are escaped as `JSONEncoder` escapes them (`"`,
/// `\`, `/`, the named controls, other controls as `\u00xx`; everything else as UTF-8).
public enum ReportJSON {
    /// The report's JSON; a number that is not finite is refused (`invalidReport`), naming its path.
    public static func encode(_ report: Report) throws(TelemetryModelError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + report.series.count * 240)
        try write(report, into: &out)
        return out
    }

    /// `{"reports":[…]}`: the body of `POST /v1/report-batches` before gzip.
    public static func encodeBatch(_ reports: [Report]) throws(TelemetryModelError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + reports.reduce(0) { $0 + 256 + $1.series.count * 240 })
        append(&out, #"{"reports":["#)
        for (i, r) in reports.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            try write(r, into: &out)
        }
        append(&out, "]}")
        return out
    }

    /// Appends the report's JSON to `out`.
    public static func write(_ r: Report, into out: inout [UInt8]) throws(TelemetryModelError) {
        append(&out, #"{"agent_version":"#)
        string(r.agentVersion, &out)
        append(&out, #","device":"#)
        string(r.device, &out)
        append(&out, #","key_epoch":"#)
        integer(UInt64(r.keyEpoch), &out)
        append(&out, #","schema":"#)
        integer(Int64(r.schema), &out)
        append(&out, #","seq":"#)
        integer(r.seq, &out)
        append(&out, #","series":["#)
        for (i, s) in r.series.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            try series(s, index: i, &out)
        }
        out.append(UInt8(ascii: "]"))
        if let session = r.troubleshootingSession {
            append(&out, #","troubleshooting_session":"#)
            integer(session, &out)
        }
        append(&out, #","window_end_ms":"#)
        integer(r.windowEndMs, &out)
        append(&out, #","window_start_ms":"#)
        integer(r.windowStartMs, &out)
        out.append(UInt8(ascii: "}"))
    }

    private static func series(_ s: Series, index: Int, _ out: inout [UInt8]) throws(TelemetryModelError) {
        append(&out, #"{"count":"#)
        integer(Int64(s.count), &out)
        append(&out, #","labels":{"#)
        for (i, key) in s.labels.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            string(key, &out)
            out.append(UInt8(ascii: ":"))
            string(s.labels[key]!, &out)
        }
        append(&out, #"},"last":"#)
        try number(s.last, "series[\(index)].last", &out)
        append(&out, #","max":"#)
        try number(s.max, "series[\(index)].max", &out)
        append(&out, #","mean":"#)
        try number(s.mean, "series[\(index)].mean", &out)
        append(&out, #","metric":"#)
        string(s.metric, &out)
        append(&out, #","min":"#)
        try number(s.min, "series[\(index)].min", &out)
        if let sketch = s.sketch {
            append(&out, #","sketch":"#)
            try self.sketch(sketch, index: index, &out)
        }
        append(&out, #","sum":"#)
        try number(s.sum, "series[\(index)].sum", &out)
        append(&out, #","unit":"#)
        string(s.unit, &out)
        out.append(UInt8(ascii: "}"))
    }

    private static func sketch(_ q: QuantileSketch, index: Int, _ out: inout [UInt8]) throws(TelemetryModelError) {
        append(&out, #"{"alpha":"#)
        try number(q.relativeAccuracy, "series[\(index)].sketch.alpha", &out)
        buckets(q.positiveStore, countKey: #","count":["#, indexKey: #"],"index":["#, &out)
        if !q.negativeStore.isEmpty {
            buckets(q.negativeStore, countKey: #","neg_count":["#, indexKey: #"],"neg_index":["#, &out)
        }
        append(&out, #","zero":"#)
        integer(q.zeroCount, &out)
        out.append(UInt8(ascii: "}"))
    }

    /// One store of a sketch as two arrays in ascending index order: the counts under `countKey`, then
    /// the indices under `indexKey` (keys sort so, and `JSONEncoder` writes them so).
    private static func buckets(_ store: [QuantileSketch.Bucket], countKey: StaticString, indexKey: StaticString, _ out: inout [UInt8]) {
        append(&out, countKey)
        for (i, b) in store.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            integer(b.count, &out)
        }
        append(&out, indexKey)
        for (i, b) in store.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            integer(Int64(b.index), &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    @inline(__always) private static func append(_ out: inout [UInt8], _ literal: StaticString) {
        literal.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    private static func integer(_ v: UInt64, _ out: inout [UInt8]) {
        if v < 10 {
            out.append(UInt8(ascii: "0") + UInt8(v))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: UInt64.max has 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var v = v, i = buffer.count
            while v > 0 {
                i -= 1
                buffer[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            out.append(contentsOf: buffer[i...])
        }
    }

    private static func integer(_ v: Int64, _ out: inout [UInt8]) {
        if v < 0 {
            out.append(UInt8(ascii: "-"))
            integer(v.magnitude, &out)
        } else {
            integer(UInt64(v), &out)
        }
    }

    /// As `JSONEncoder` writes a `Double`: Swift's shortest round-trip form, without a trailing `.0`.
    private static func number(_ v: Double, _ path: @autoclosure () -> String, _ out: inout [UInt8]) throws(TelemetryModelError) {
        // What `JSONEncoder` refuses too.
        guard v.isFinite else { throw TelemetryModelError(.invalidReport, "\(path()): a number that is not finite cannot be written as JSON") }
        if v == v.rounded(.towardZero), Swift.abs(v) < 1e15 {
            // Integral and printed without an exponent by `description`: the integer's digits (and the
            // sign of -0).
            if v == 0 {
                if v.sign == .minus { out.append(UInt8(ascii: "-")) }
                out.append(UInt8(ascii: "0"))
            } else {
                integer(Int64(v), &out)
            }
            return
        }
        var text = v.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        out.append(contentsOf: text.utf8)
    }

    private static func string(_ s: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var start = 0
            for (i, b) in bytes.enumerated() where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b == UInt8(ascii: "/") {
                out.append(contentsOf: bytes[start..<i])
                start = i + 1
                out.append(UInt8(ascii: "\\"))
                switch b {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(b)
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x09: out.append(UInt8(ascii: "t"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xF)]])
                }
            }
            out.append(contentsOf: bytes[start...])
        }
        out.append(UInt8(ascii: "\""))
    }
}
