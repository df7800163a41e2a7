import TelemetryModel

/// The row layout both backends share: one row per report and data class, its series in a compact
/// payload (``SeriesCodec``). Encoding and decoding live here so SQLite and PostgreSQL store and return
/// exactly the same thing.
enum ReportRows {
    /// One stored report-and-class row as read back.
    struct Row {
        var deviceID: String
        var seq: Int64
        var dataClass: String
        var windowStartMs: Int64
        var windowEndMs: Int64
        var codec: Int
        var seriesCount: Int
        var payload: [UInt8]
    }

    /// The report's series grouped by data class (sorted by class), each group compressed.
    static func payloads(_ report: Report, _ classes: [DataClass]) throws -> [(dataClass: String, seriesCount: Int, payload: [UInt8])] {
        precondition(classes.count == report.series.count)
        // A report has a handful of classes: a list searched in place costs less than hashing every series'
        // class, and a report of one class is encoded as it came, without a copy of its series.
        var groups: [(dataClass: String, indices: [Int])] = []
        for (i, c) in classes.enumerated() {
            if let g = groups.firstIndex(where: { $0.dataClass == c.rawValue }) {
                groups[g].indices.append(i)
            } else {
                groups.append((c.rawValue, [i]))
            }
        }
        groups.sort { $0.dataClass < $1.dataClass }
        return try groups.map { g in
            let series = g.indices.count == report.series.count ? report.series : g.indices.map { report.series[$0] }
            return (g.dataClass, series.count, try SeriesCodec.compress(series))
        }
    }

    /// The series of `row` whose metric passes `keep`, as stored windows.
    /// A row that does not decode fails with the row named (device, report, class, window) and the reason.
    static func windows(_ row: Row, where keep: (String) -> Bool) throws -> [StoredWindow] {
        let series: [Series]
        do {
            series = try SeriesCodec.decompress(row.payload, codec: row.codec, seriesCount: row.seriesCount)
        } catch {
            throw SeriesCodec.DecodingFailure(description: "stored row of device \(row.deviceID), report \(row.seq), class \(row.dataClass), "
                                              + "window ending at \(row.windowEndMs) ms, codec \(row.codec): \(error)")
        }
        return series.compactMap { s in
            guard keep(s.metric) else { return nil }
            return StoredWindow(deviceID: row.deviceID, seq: row.seq, dataClass: row.dataClass, metric: s.metric, unit: s.unit, labels: s.labels,
                                windowStartMs: row.windowStartMs, windowEndMs: row.windowEndMs, count: s.count, min: s.min, max: s.max,
                                mean: s.mean, last: s.last, sum: s.sum, sketch: s.sketch)
        }
    }

    /// The order `windows(device:…)` answers in, on every backend: window start, metric, labels.
    static func ordered(_ windows: [StoredWindow], limit: Int) -> [StoredWindow] {
        let sorted = windows.map { ($0, canonicalLabelsJSON($0.labels)) }.sorted { a, b in
            if a.0.windowStartMs != b.0.windowStartMs { return a.0.windowStartMs < b.0.windowStartMs }
            if a.0.metric != b.0.metric { return a.0.metric < b.0.metric }
            return a.1 < b.1
        }
        return Array(sorted.prefix(limit).map(\.0))
    }
}
