@testable import CollectorCore
import Testing

/// The dashboard's server-drawn charts, as SVG text.
@Suite struct SVGChartTests {
    static func chart(_ series: [SVGChart.Series]) -> String {
        SVGChart(metric: "meetpunt_link_rx_bits_per_second", title: "Received", unit: "bits_per_second",
                 fromMs: 1_700_000_000_000, toMs: 1_700_003_600_000, series: series).render()
    }

    /// The y-axis group's value labels (the x-axis group follows it).
    static func valueLabels(_ svg: String) -> Int {
        guard let axis = svg.range(of: "<g class=\"axis y-axis\">"), let end = svg.range(of: "</g>", range: axis.upperBound..<svg.endIndex)
        else { return -1 }
        return svg[axis.upperBound..<end.lowerBound].components(separatedBy: "class=\"axis-label\"").count - 1
    }

    @Test func anEmptyChartSaysSoAndDrawsNoValueScale() {
        let svg = Self.chart([])
        #expect(svg.contains("no data in this range"))
        #expect(Self.valueLabels(svg) == 0, "an empty chart showed a 0-1 scale in the metric's unit: \(svg)")
        #expect(svg.contains("class=\"axis-line\""), "the time axis stays")
    }

    @Test func aChartWithValuesHasItsScale() {
        let svg = Self.chart([SVGChart.Series(label: "eth0", points: [(1_700_000_600_000, 2e6), (1_700_001_200_000, 5e6)])])
        #expect(!svg.contains("no data in this range"))
        #expect(Self.valueLabels(svg) >= 3, "\(svg)")
    }
}
