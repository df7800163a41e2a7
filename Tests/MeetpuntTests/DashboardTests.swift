import Foundation
import Testing

/// The dashboard as a browser sees it (issue 16, acceptance 1): Debian's headless Chromium logs in to a
/// collector filled by a real agent run, loads the fleet page and the device page, and the rendered DOM
/// holds the charts and figures; unauthenticated requests go to the login page; a form post without the
/// CSRF token is refused; every device page view is in the audit trail with its reason.
@Suite struct DashboardTests {
    static let check = TestSupport.repositoryRoot.appendingPathComponent("scripts/browser/dashboard_check.py").path
    static var browserInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/selenium")
    }

    @Test(.enabled(if: browserInstalled, "needs Debian's chromium, chromium-driver and python3-selenium (scripts/browser/setup.sh)"))
    func chromiumLogsInAndReadsTheFleetAndDevicePages() async throws {
        let collector = try CollectorProcess(device: "dash-1", extraConfig: "fleet: {min_reports: 1}")
        defer { collector.stop() }
        let collectorConfig = "\(collector.directory.path)/collector.yaml"
        let cli = TestSupport.executable("meetpunt-collector")
        let dir = try TestSupport.tempDirectory()
        let operatorToken = dir.appendingPathComponent("operator.token").path
        try TestSupport.sh("\(cli) token add --role operator --name noc --token-file \(operatorToken) --config \(collectorConfig)")
        let config = dir.appendingPathComponent("agent.yaml").path
        try """
            device_id: dash-1
            collector: {url: "http://127.0.0.1:\(collector.port)", token_file: \(collector.tokenFile), insecure_demo: true}
            state_dir: \(dir.path)/state
            sampling: {interval_seconds: 1, window_seconds: 4}
            link: {interfaces: ["lo"], include_loopback: true}
            lan_clients: {enabled: false}
            wifi: {enabled: false}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // A real agent run: three windows or more, delivered, and the fleet aggregates flushed (every 10 s).
        let agent = try ChildProcess(TestSupport.executable("meetpunt-agent"), ["run", "--config", config, "--duration", "14"])
        #expect(try await agent.awaitExit(timeout: 60) == 0)
        let deadline = Date().addingTimeInterval(30)
        var fleet = ""
        while Date() < deadline {
            fleet = try TestSupport.sh("curl -s -H \"Authorization: Bearer $(cat \(operatorToken))\" 'http://127.0.0.1:\(collector.port)/v1/fleet?metric=link.rx_rate&from=0'")
            if fleet.contains("\"reports\"") { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(fleet.contains("\"reports\""), "fleet aggregates flushed: \(fleet)")

        let shots = dir.appendingPathComponent("shots").path
        let started = Date()
        let out = try TestSupport.sh("/usr/bin/python3 \(Self.check) --base-url http://127.0.0.1:\(collector.port) --token \"$(cat \(operatorToken))\" "
                                     + "--device dash-1 --expect-metric device:link.rx_rate --expect-metric device:link.tx_rate --expect-metric device:system.cpu_busy "
                                     + "--expect-metric fleet:link.rx_rate --expect-series device:link.rx_rate=interface=lo "
                                     + "--expect-value fleet:devices-reporting=1 --expect-value 'fleet:reports-stored>=3' "
                                     + "--screenshots \(shots) --json 2>\(dir.path)/check.err", check: false)
        struct Result: Decodable {
            struct Check: Decodable { let name: String; let pass: Bool; let detail: String }
            let result: String
            let checks: [Check]
            let device_views_with_reason: Int?
        }
        let detail = (try? String(contentsOfFile: "\(dir.path)/check.err", encoding: .utf8)) ?? ""
        let result = try #require(try? JSONDecoder().decode(Result.self, from: Data(out.utf8)), "no JSON from the browser check:\n\(out)\n\(detail.suffix(3000))")
        for c in result.checks where !c.pass { Issue.record("browser check failed: \(c.name): \(c.detail)") }
        #expect(result.result == "pass" && result.checks.count >= 20, "\(result.checks.count) checks")
        for png in ["fleet.png", "device.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: "\(shots)/\(png)")[.size] as? Int) ?? 0
            #expect(size > 10_000, "\(png): \(size) bytes")
        }
        print("dashboard browser check: \(result.checks.count) checks passed in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        // Audited: the logins and each device page view with the operator and the stated reason.
        let audit = try TestSupport.sh("\(cli) audit --config \(collectorConfig) --device dash-1")
        let views = audit.split(separator: "\n").filter { $0.contains("view device page") && $0.contains("operator:noc") && $0.contains("acceptance") }
        #expect(views.count == (result.device_views_with_reason ?? -1), "audited views \(views.count): \(audit)")
        #expect(try TestSupport.sh("\(cli) audit --config \(collectorConfig)").contains("dashboard login"))

        // The demo's one-time login link: it logs in once, then never again.
        let link = try TestSupport.sh("\(cli) dashboard login-link --name demo-operator --minutes 5 --config \(collectorConfig)").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(link.hasPrefix("/ui/login/once?code="), "\(link)")
        let first = try TestSupport.sh("curl -s -o /dev/null -D - 'http://127.0.0.1:\(collector.port)\(link)'")
        #expect(first.hasPrefix("HTTP/1.1 303") && first.contains("meetpunt_session=") && first.contains("HttpOnly"), "\(first)")
        let cookie = try #require(first.firstMatch(of: /meetpunt_session=([A-Za-z0-9_-]+)/).map { String($0.1) })
        #expect(try TestSupport.sh("curl -s -o /dev/null -w '%{http_code}' -b meetpunt_session=\(cookie) http://127.0.0.1:\(collector.port)/ui/fleet") == "200")
        #expect(try TestSupport.sh("curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:\(collector.port)\(link)'") == "401", "used twice")
        let code = String(link.split(separator: "=").last ?? "")
        #expect(try TestSupport.sh("curl -s -o /dev/null -w '%{http_code}' -b meetpunt_session=\(code) http://127.0.0.1:\(collector.port)/ui/fleet") == "303",
                "a login link is not a session cookie")
    }
}
