import AgentCore
import CollectorCore
import Foundation
import GzipCodec
import Testing
import TelemetryModel

/// Issue 16, acceptance 4: the fleet aggregates reach an OTLP/HTTP receiver (a minimal one written for
/// the test, decoding the protobuf with OpenTelemetry's own generated classes) with the expected names,
/// attributes and values, from a real collector process.
@Suite struct OTLPExportTests {
    static let setup = TestSupport.repositoryRoot.appendingPathComponent("scripts/otlp/setup.sh").path
    static let receiver = TestSupport.repositoryRoot.appendingPathComponent("scripts/otlp/receiver.py").path

    struct Point: Decodable {
        let name: String
        let attributes: [String: String]
        let resource: [String: String]
        let value: Double?
    }

    @Test func fleetPercentilesArriveAtAnOTLPReceiver() async throws {
        let python = try #require(try TestSupport.sh("\(Self.setup) 2>/dev/null").split(separator: "\n").last.map(String.init),
                                  "scripts/otlp/setup.sh prints the venv's python")
        let dir = try TestSupport.tempDirectory()
        let out = dir.appendingPathComponent("received.jsonl").path
        let receiver = try ChildProcess(python, [Self.receiver, "--port", "0", "--out", out])
        defer { receiver.stop() }
        let port = try #require(Int(try await receiver.awaitLine("listening on").split(separator: ":").last ?? ""))

        let collector = try CollectorProcess(device: "otlp-1", extraConfig: """
            fleet: {min_reports: 3}
            otlp: {endpoint: "http://127.0.0.1:\(port)/v1/metrics", interval_seconds: 2}
            """)
        defer { collector.stop() }
        // Four reports in the last complete 5-minute bucket, band 5: their pooled signal values are known.
        // The collector exports the last complete bucket at export time: when a bucket boundary is less than
        // 90 s away (the first flush and export come within ~15 s, the wait below is 60 s), start after it,
        // or the reports' bucket would stop being the last complete one before they are exported (a
        // CI run failed so at 23:40 UTC).
        let bucket: Int64 = 300_000
        var now = Int64(Date().timeIntervalSince1970 * 1000)
        if bucket - now % bucket < 90_000 {
            try await Task.sleep(for: .milliseconds(bucket - now % bucket + 1_000))
            now = Int64(Date().timeIntervalSince1970 * 1000)
        }
        let last = now / bucket * bucket - bucket
        let values: [[Double]] = [[-40, -45, -50], [-60, -62], [-70, -71, -72, -73], [-55]]
        var body: [UInt8] = Array(#"{"reports":["#.utf8)
        for (i, v) in values.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            let r = FleetTests.signalReport(device: "otlp-1", seq: UInt64(i + 1), endMs: last + 60_000 * Int64(i + 1), band: "5", values: v)
            body += try ReportAssembler.encode(r)
        }
        body += Array("]}".utf8)
        let transport = try CurlTransport(baseURL: "http://127.0.0.1:\(collector.port)", token: collector.token, timeoutSeconds: 10)
        guard case .success(let r) = await transport.post(path: "v1/report-batches", gzipBody: try Gzip.compress(body)), r.status == 200 else {
            Issue.record("ingest failed")
            return
        }

        // The collector flushes its aggregates every 10 s and exports every 2 s.
        var points: [Point] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            points = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Point.self, from: Data($0.utf8)) }
            if points.contains(where: { $0.name == "meetpunt.fleet.wifi.station.signal_dbm" && $0.attributes["quantile"] == "0.5" }) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let signal = points.filter { $0.name == "meetpunt.fleet.wifi.station.signal_dbm" }
        let median = try #require(signal.last { $0.attributes["quantile"] == "0.5" }, "no median arrived: \(points.map(\.name).sorted().suffix(20))\n\(receiver.text.suffix(1500))")
        #expect(median.attributes["meetpunt.band"] == "5", "\(median.attributes)")
        #expect(median.resource["service.name"] == "meetpunt-collector" && median.resource["service.version"] != nil, "\(median.resource)")

        // The same figures /v1/fleet answers from the same merged sketch, and the pooled values' own percentiles within 1 %.
        let pooled = values.flatMap { $0 }.sorted()
        for (q, name) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
            let p = try #require(signal.last { $0.attributes["quantile"] == name }?.value, "quantile \(name)")
            let exact = pooled[max(0, Int((q * Double(pooled.count)).rounded(.up)) - 1)]
            #expect(abs(p - exact) <= abs(exact) * 0.01 + 1e-9, "q\(name): exported \(p), pooled \(exact)")
        }
        let reports = try #require(points.last { $0.name == "meetpunt.fleet.wifi.station.signal_dbm.reports" }?.value)
        #expect(reports == 4)
        // Nothing of one device: no device id, pseudonym or interface name in any attribute.
        for p in points {
            for v in Array(p.attributes.values) + Array(p.resource.values) { #expect(v != "otlp-1" && v != "wlan0" && v != "others", "\(p.name) \(p.attributes)") }
        }
        print("OTLP: \(points.count) data points received, signal median \(median.value ?? .nan) dBm for band 5")
    }

    @Test func aBadEndpointIsRefusedAtStart() throws {
        let dir = try TestSupport.tempDirectory()
        let config = dir.appendingPathComponent("collector.yaml").path
        try """
            listen: {host: 127.0.0.1, port: 0}
            storage: {sqlite_path: \(dir.path)/c.sqlite}
            retention_file: \(TestSupport.repositoryRoot.path)/collector/retention.yaml
            otlp: {endpoint: "otel:4318"}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let out = try TestSupport.sh("\(TestSupport.executable("meetpunt-collector")) serve --config \(config) 2>&1", check: false)
        #expect(out.contains("otlp.endpoint"), "\(out)")
        // An environment that would turn swift-otel to gRPC (not in this build) is refused with one line.
        #expect(FleetOTLPExport.environmentProblem(["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])?.contains("OTLP/HTTP only") == true)
        #expect(FleetOTLPExport.environmentProblem(["OTEL_SDK_DISABLED": "true"]) != nil)
        #expect(FleetOTLPExport.environmentProblem(["PATH": "/usr/bin"]) == nil)
    }
}
