import Foundation

/// A time-series line chart drawn on the server as inline SVG: axes with ticks and labels, the unit, a
/// legend, one path per series. No script and nothing fetched by the browser.
struct SVGChart {
    struct Series {
        var label: String
        /// (milliseconds since the epoch, value), in time order.
        var points: [(Int64, Double)]
    }

    var metric: String
    var title: String
    var unit: String
    var fromMs: Int64
    var toMs: Int64
    var series: [Series]
    var width = 880
    var height = 260

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    static let maxSeries = palette.count

    func render() -> String {
        let left = 78.0, right = 16.0, top = 26.0, bottom = 34.0
        let legendRows = (min(series.count, Self.maxSeries) + 2) / 3
        let plotW = Double(width) - left - right, plotH = Double(height) - top - bottom
        let totalH = height + legendRows * 18 + 6
        let values = series.prefix(Self.maxSeries).flatMap { $0.points.map(\.1) }.filter(\.isFinite)
        var lo = values.min() ?? 0, hi = values.max() ?? 1
        if lo == hi { lo -= 1; hi += 1 }
        if lo > 0, lo < hi * 0.5 { lo = 0 }  // rates and counts read best from zero
        // An empty chart gets no value scale: a 0-1 axis in the metric's unit would read as a measurement.
        let yTicks = values.isEmpty ? [] : Self.niceTicks(lo, hi, count: 5)
        lo = min(lo, yTicks.first ?? lo)
        hi = max(hi, yTicks.last ?? hi)
        let span = Double(max(1, toMs - fromMs))
        func x(_ t: Int64) -> Double { left + (Double(t - fromMs) / span) * plotW }
        func y(_ v: Double) -> Double { top + plotH - (v - lo) / (hi - lo) * plotH }

        var svg = "<svg class=\"chart\" data-metric=\"\(HTML.escape(metric))\" xmlns=\"http://www.w3.org/2000/svg\" "
        svg += "viewBox=\"0 0 \(width) \(totalH)\" width=\"\(width)\" height=\"\(totalH)\" role=\"img\" aria-label=\"\(HTML.escape(title))\">"
        svg += "<title>\(HTML.escape(title))</title>"
        svg += "<text class=\"chart-title\" x=\"\(left)\" y=\"16\">\(HTML.escape(title))</text>"
        svg += "<text class=\"unit\" x=\"\(Int(left) - 8)\" y=\"16\" text-anchor=\"end\">\(HTML.escape(UnitFormat.axisName(unit)))</text>"
        // Axes and grid.
        svg += "<g class=\"axis y-axis\">"
        for v in yTicks {
            let yy = Self.f(y(v))
            svg += "<line class=\"grid\" x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(yy)\" y2=\"\(yy)\"/>"
            svg += "<text class=\"axis-label\" x=\"\(Self.f(left - 6))\" y=\"\(yy)\" dy=\"0.32em\" text-anchor=\"end\">\(HTML.escape(UnitFormat.value(v, unit: unit)))</text>"
        }
        svg += "</g><g class=\"axis x-axis\">"
        svg += "<line class=\"axis-line\" x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(top + plotH)\" y2=\"\(top + plotH)\"/>"
        for t in Self.timeTicks(fromMs, toMs) {
            let xx = Self.f(x(t))
            svg += "<line class=\"tick\" x1=\"\(xx)\" x2=\"\(xx)\" y1=\"\(top + plotH)\" y2=\"\(top + plotH + 4)\"/>"
            svg += "<text class=\"axis-label\" x=\"\(xx)\" y=\"\(Self.f(top + plotH + 18))\" text-anchor=\"middle\">\(HTML.escape(Self.timeLabel(t, span: toMs - fromMs)))</text>"
        }
        svg += "</g>"
        if values.isEmpty {
            svg += "<text class=\"empty\" x=\"\(Self.f(left + plotW / 2))\" y=\"\(Self.f(top + plotH / 2))\" text-anchor=\"middle\">no data in this range</text>"
        }
        // Series: a gap of more than three typical steps breaks the line.
        for (i, s) in series.prefix(Self.maxSeries).enumerated() {
            let colour = Self.palette[i % Self.palette.count]
            let pts = s.points.filter { $0.1.isFinite }
            let steps = zip(pts.dropFirst(), pts).map { $0.0 - $1.0 }.sorted()
            let gap = steps.isEmpty ? Int64.max : max(steps[steps.count / 2] * 3, 1)
            var d = ""
            var previous: Int64?
            for (t, v) in pts {
                d += (previous == nil || t - previous! > gap ? "M" : "L") + "\(Self.f(x(t))),\(Self.f(y(v))) "
                previous = t
            }
            svg += "<g class=\"series\" data-series=\"\(HTML.escape(s.label))\" data-points=\"\(pts.count)\">"
            svg += "<path d=\"\(d.trimmingCharacters(in: .whitespaces))\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.8\"/>"
            if pts.count <= 2 {  // a lone point draws nothing as a path
                for (t, v) in pts { svg += "<circle cx=\"\(Self.f(x(t)))\" cy=\"\(Self.f(y(v)))\" r=\"2.5\" fill=\"\(colour)\"/>" }
            }
            svg += "</g>"
        }
        // Legend: three entries per row under the plot.
        svg += "<g class=\"legend\">"
        for (i, s) in series.prefix(Self.maxSeries).enumerated() {
            let lx = left + Double(i % 3) * (plotW / 3), ly = Double(height + (i / 3) * 18)
            svg += "<rect x=\"\(Self.f(lx))\" y=\"\(Self.f(ly - 9))\" width=\"12\" height=\"4\" fill=\"\(Self.palette[i % Self.palette.count])\"/>"
            svg += "<text x=\"\(Self.f(lx + 18))\" y=\"\(Self.f(ly - 4))\">\(HTML.escape(s.label))</text>"
        }
        if series.count > Self.maxSeries {
            svg += "<text x=\"\(left)\" y=\"\(totalH - 2)\">and \(series.count - Self.maxSeries) more series not drawn</text>"
        }
        svg += "</g></svg>"
        return svg
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// About `count` round values covering [lo, hi].
    static func niceTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
        let raw = (hi - lo) / Double(max(1, count))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var v = floor(lo / step) * step
        while v <= hi + step * 0.5, ticks.count < 12 {
            ticks.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return ticks
    }

    /// Round times across the range (minutes, hours or days).
    static func timeTicks(_ from: Int64, _ to: Int64) -> [Int64] {
        let span = to - from
        let steps: [Int64] = [60_000, 300_000, 600_000, 1_800_000, 3_600_000, 3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, 86_400_000, 2 * 86_400_000]
        let step = steps.first { span / $0 <= 7 } ?? 7 * 86_400_000
        var t = (from / step + 1) * step
        var out: [Int64] = []
        while t < to, out.count < 10 { out.append(t); t += step }
        return out
    }

    static func timeLabel(_ ms: Int64, span: Int64) -> String {
        let c = Calendar(identifier: .gregorian)
        var utc = c
        utc.timeZone = TimeZone(identifier: "UTC")!
        let d = utc.dateComponents([.month, .day, .hour, .minute], from: Date(timeIntervalSince1970: Double(ms) / 1000))
        let hm = String(format: "%02d:%02d", d.hour ?? 0, d.minute ?? 0)
        return span > 86_400_000 ? String(format: "%02d-%02d ", d.month ?? 0, d.day ?? 0) + hm : hm
    }
}

/// Values with their unit, as an operator reads them.
enum UnitFormat {
    static func axisName(_ unit: String) -> String {
        switch unit {
        case "bits_per_second": "bit/s"
        case "megabits_per_second": "Mbit/s"
        case "bytes": "bytes"
        case "dbm": "dBm"
        case "decibels": "dB"
        case "milliseconds": "ms"
        case "ratio": "%"
        default: unit.replacingOccurrences(of: "_", with: " ")
        }
    }

    static func value(_ v: Double, unit: String) -> String {
        switch unit {
        case "bits_per_second": return scaled(v, ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"], 1000)
        case "bytes": return scaled(v, ["B", "kB", "MB", "GB", "TB"], 1000)
        case "milliseconds": return trimmed(v) + " ms"
        case "ratio": return trimmed(v * 100) + " %"
        case "dbm": return trimmed(v) + " dBm"
        case "decibels": return trimmed(v) + " dB"
        default: return trimmed(v)
        }
    }

    static func scaled(_ v: Double, _ names: [String], _ base: Double) -> String {
        var x = v, i = 0
        while abs(x) >= base, i < names.count - 1 { x /= base; i += 1 }
        return trimmed(x) + " " + names[i]
    }

    static func trimmed(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return abs(v) >= 100 ? String(format: "%.0f", v) : abs(v) >= 10 ? String(format: "%.1f", v) : String(format: "%.2f", v)
    }
}

/// HTML text and attribute escaping.
enum HTML {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
