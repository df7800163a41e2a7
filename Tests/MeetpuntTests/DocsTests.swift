import Foundation
import Testing
import TelemetryModel

/// The docs are the source of truth for operators: these tests fail when the code ships something the
/// docs do not list.
@Suite struct DocsTests {
    /// The first-column entries (in backticks) of the markdown table whose header starts with `header`.
    static func tableRows(_ file: String, header: String) throws -> [[String]] {
        let text = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent(file), encoding: .utf8)
        var rows: [[String]] = []
        var inTable = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(header) { inTable = true; continue }
            guard inTable else { continue }
            guard line.hasPrefix("|") else { if !rows.isEmpty { break } else { continue } }
            if line.hasPrefix("|---") || line.hasPrefix("| ---") { continue }
            rows.append(line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "") })
        }
        return rows
    }

    /// Every key a report can carry: top level, per series, and every label key of every metric.
    static func shippedFields() throws -> Set<String> {
        var sketch = QuantileSketch()
        sketch.add(1)
        let series = Series(metric: "link.rx_rate", unit: "bits_per_second", labels: [:], count: 1, min: 1, max: 1, mean: 1, last: 1, sum: 1, sketch: sketch)
        let report = Report(device: "d", seq: 1, windowStartMs: 0, windowEndMs: 1, keyEpoch: 1, agentVersion: "v", series: [series], troubleshootingSession: 1)
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        var fields = Set(json.keys)
        let first = try #require((json["series"] as? [[String: Any]])?.first)
        fields.formUnion(first.keys.map { "series.\($0)" })
        for d in MetricCatalog.all { fields.formUnion(d.labels.keys.map { "label.\($0)" }) }
        fields.insert("header.Authorization")
        return fields
    }

    @Test func privacyInventoryListsEveryShippedField() throws {
        let rows = try Self.tableRows("docs/privacy.md", header: "| field | purpose | data class | retention | pseudonymised |")
        let documented = Set(rows.map { $0[0] })
        let shipped = try Self.shippedFields()
        #expect(shipped.subtracting(documented).isEmpty, "shipped but not in docs/privacy.md: \(shipped.subtracting(documented).sorted())")
        #expect(documented.subtracting(shipped).isEmpty, "documented but not shipped: \(documented.subtracting(shipped).sorted())")
        for row in rows { #expect(row.count == 5 && row.allSatisfy { !$0.isEmpty }, "incomplete row \(row)") }
    }

    @Test func metricsDocMatchesTheCatalog() throws {
        let rows = try Self.tableRows("docs/metrics.md", header: "| metric | unit | kind | data class | labels | source |")
        #expect(rows.count == MetricCatalog.all.count)
        for d in MetricCatalog.all {
            let row = try #require(rows.first { $0[0] == d.name }, "\(d.name) missing from docs/metrics.md")
            #expect(row[1] == d.unit, "\(d.name) unit")
            #expect(row[2] == d.kind.rawValue, "\(d.name) kind")
            #expect(row[3] == d.dataClass.rawValue, "\(d.name) data class")
        }
    }

    /// `descriptor(named:)` answers traffic metrics from an index of their own (``MetricCatalog``): every
    /// catalogued metric is still found by its name, as itself, and an unknown name is not.
    @Test func everyCataloguedMetricIsFoundByItsName() throws {
        for d in MetricCatalog.all {
            let found = try #require(MetricCatalog.descriptor(named: d.name), "\(d.name) not found")
            #expect(found.name == d.name && found.unit == d.unit && found.kind == d.kind && found.dataClass == d.dataClass
                    && found.labels.keys.sorted() == d.labels.keys.sorted() && found.source == d.source, "\(d.name)")
        }
        #expect(MetricCatalog.descriptor(named: "traffic.no_such_metric") == nil)
        #expect(MetricCatalog.descriptor(named: "link.no_such_metric") == nil)
    }
}

/// The agent's closure stays small: no NIO, Hummingbird, GRDB, Yams, swift-crypto (BoringSSL) or full
/// Foundation code in the agent binary.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/nm"), "needs nm (binutils)"))
struct ArchitectureTests {
    @Test func agentBinaryHoldsNoHeavyLibraries() throws {
        let agent = TestSupport.executable("meetpunt-agent")
        let heavy = try TestSupport.sh("nm \(agent) | grep -cE 'NIOCore|NIOPosix|Hummingbird|GRDB|PostgresNIO|FoundationInternationalization|CCryptoBoringSSL|Yams' || true")
        #expect(heavy.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        let linked = try TestSupport.sh("ldd \(agent)")
        #expect(!linked.contains("libFoundation.so"), "the agent links full Foundation:\n\(linked)")
        // Pseudonyms use OpenSSL's libcrypto, opened with dlopen at the first use (not linked: its
        // relocations were 0.9 ms of every start), as libcurl is opened when `run` ships.
        #expect(!linked.contains("libcrypto"), "libcrypto is linked, not opened at first use:\n\(linked)")
        let sonames = try TestSupport.sh("strings \(agent) | grep -xE 'libcrypto[.]so[.]3|libcurl[.]so[.]4' | sort -u")
        #expect(sonames.split(separator: "\n") == ["libcrypto.so.3", "libcurl.so.4"], "the SONAMEs the agent opens: \(sonames)")
    }
}
