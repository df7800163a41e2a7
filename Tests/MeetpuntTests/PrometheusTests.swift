import AgentCore
import Foundation
import GzipCodec
import Testing
import TelemetryModel

/// `/metrics` as a real Prometheus sees it: Debian's prometheus scrapes the collector with an operator
/// token and its query API returns the collector's ingest counter with the right value.
@Suite struct PrometheusTests {
    static let prometheus = "/usr/bin/prometheus"

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: prometheus), "needs Debian's prometheus package"))
    func prometheusScrapesTheIngestCounter() async throws {
        let collector = try CollectorProcess(device: "prom-1")
        defer { collector.stop() }
        let dir = try TestSupport.tempDirectory()
        let tokenFile = dir.appendingPathComponent("operator.token").path
        try TestSupport.sh("\(TestSupport.executable("meetpunt-collector")) token add --role operator --name prometheus --token-file \(tokenFile) --config \(collector.directory.path)/collector.yaml")

        // 7 reports stored, then the same 7 again (duplicates), through the agent's own transport.
        let transport = try CurlTransport(baseURL: "http://127.0.0.1:\(collector.port)", token: collector.token, timeoutSeconds: 10)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var reports: [UInt8] = Array(#"{"reports":["#.utf8)
        for seq in UInt64(1)...7 {
            if seq > 1 { reports.append(UInt8(ascii: ",")) }
            let end = now - Int64(8 - seq) * 60_000
            reports += try Gzip.decompress(DeliveryTests.report("prom-1", seq: seq, startMs: end - 60_000, endMs: end), limit: 1 << 20)
        }
        reports += Array("]}".utf8)
        for _ in 0..<2 {
            guard case .success(let r) = await transport.post(path: "v1/report-batches", gzipBody: try Gzip.compress(reports)), r.status == 200 else {
                Issue.record("ingest failed")
                return
            }
        }

        let unauthenticated = try TestSupport.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:\(collector.port)/metrics")
        #expect(unauthenticated == "401")
        let text = try TestSupport.sh("curl -s -H \"Authorization: Bearer $(cat \(tokenFile))\" http://127.0.0.1:\(collector.port)/metrics")
        #expect(text.contains(#"meetpunt_ingest_reports_total{outcome="stored"} 7"#), "\(text.prefix(2000))")
        #expect(text.contains(#"meetpunt_ingest_reports_total{outcome="duplicate"} 7"#))
        #expect(!text.contains("prom-1"), "no per-device series")

        let promPort = 20_000 + Int.random(in: 0..<9_000)
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: meetpunt
                authorization: {type: Bearer, credentials_file: \(tokenFile)}
                static_configs: [{targets: ["127.0.0.1:\(collector.port)"]}]
            """.write(toFile: dir.appendingPathComponent("prometheus.yml").path, atomically: true, encoding: .utf8)
        let prometheus = try ChildProcess(Self.prometheus, ["--config.file=\(dir.path)/prometheus.yml", "--storage.tsdb.path=\(dir.path)/tsdb",
                                                            "--web.listen-address=127.0.0.1:\(promPort)"])
        defer { prometheus.stop() }
        var value: String?
        let deadline = Date().addingTimeInterval(90)
        while value == nil, Date() < deadline {
            usleep(500_000)
            let answer = try TestSupport.sh(#"curl -s -G --data-urlencode 'query=meetpunt_ingest_reports_total{outcome="stored"}' "#
                                            + "http://127.0.0.1:\(promPort)/api/v1/query", check: false)
            struct Query: Decodable {
                struct Data: Decodable {
                    struct Result: Decodable { let value: [QueryValue] }
                    let result: [Result]
                }
                let data: Data
            }
            if let q = try? JSONDecoder().decode(Query.self, from: Data(answer.utf8)), let v = q.data.result.first?.value.last {
                value = v.text
            }
        }
        #expect(value == "7", "Prometheus' query API: \(value ?? "no answer")\n\(prometheus.text.suffix(1500))")
    }
}

/// A Prometheus query value: `[timestamp, "value"]`.
struct QueryValue: Decodable {
    let text: String
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { text = s } else { text = String(try c.decode(Double.self)) }
    }
}
