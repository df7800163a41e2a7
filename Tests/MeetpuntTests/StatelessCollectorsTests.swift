import CollectorCore
import Foundation
import Testing
import TelemetryModel

/// Two `meetpunt-collector serve` processes on one PostgreSQL database, as behind a load balancer
/// (issue 15, stateless collectors): a device's reports land on either; a report re-sent to the other
/// process is a duplicate; what one stored the other returns; a troubleshooting session started through
/// one reaches the device polling the other. The database password is in no line either process wrote.
@Suite(.serialized) struct StatelessCollectorsTests {
    @Test(.enabled(if: TestDatabases.postgresAvailable, "needs PostgreSQL: MEETPUNT_TEST_POSTGRES (scripts/test.sh sets it from scripts/postgres/cluster.sh)"))
    func twoCollectorProcessesOnOnePostgreSQLAnswerAsOne() async throws {
        let configuration = try TestDatabases.configuration(.postgres)
        let pg = try #require(configuration.postgres)
        defer { _ = try? TestDatabases.psql(pg, "DROP DATABASE IF EXISTS \(pg.database) WITH (FORCE)") }
        let dir = try TestSupport.tempDirectory()
        let config = dir.appendingPathComponent("collector.yaml").path
        try """
            listen: {host: 127.0.0.1, port: 0}
            storage:
              backend: postgres
              postgres: {host: \(pg.host), port: \(pg.port), database: \(pg.database), user: \(pg.user), password_file: \(pg.passwordFile ?? ""), tls: disable}
            retention_file: \(TestSupport.repositoryRoot.path)/collector/retention.yaml
            logging: {level: trace}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let exe = TestSupport.executable("meetpunt-collector")
        let tokens = dir.appendingPathComponent("device.token").path, opTokens = dir.appendingPathComponent("operator.token").path
        let cliOutput = try TestSupport.sh("\(exe) device add pg-dev-1 --config \(config) --token-file \(tokens) 2>&1")
            + TestSupport.sh("\(exe) token add --role operator --name noc-pg --config \(config) --token-file \(opTokens) 2>&1")
        let deviceToken = try String(contentsOfFile: tokens, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let operatorToken = try String(contentsOfFile: opTokens, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let a = try ChildProcess(exe, ["serve", "--config", config])
        let b = try ChildProcess(exe, ["serve", "--config", config])
        defer { a.stop(); b.stop() }
        let ports = try [a, b].map { p in try #require(Int(try p.waitFor("listening on").split(separator: ":").last ?? ""), "no port in: \(p.text)") }

        func post(_ report: Report, to port: Int) throws -> ReportAcknowledgement {
            let file = dir.appendingPathComponent("report-\(report.seq).json")
            try JSONEncoder().encode(report).write(to: file)
            let answer = try TestSupport.sh("curl -s -H 'Authorization: Bearer \(deviceToken)' -H 'Content-Type: application/json' --data-binary @\(file.path) http://127.0.0.1:\(port)/v1/reports")
            do { return try JSONDecoder().decode(ReportAcknowledgement.self, from: Data(answer.utf8)) } catch {
                throw TestFailure("seq \(report.seq) to port \(port): not an acknowledgement: \(answer)")
            }
        }
        // Twenty reports, alternating between the processes, each sent again to the other one.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var stored = 0, duplicates = 0
        for seq in 1...20 {
            let r = FleetTests.signalReport(device: "pg-dev-1", seq: UInt64(seq), endMs: now - Int64(21 - seq) * 60_000, band: "5", values: [-40, -50, Double(-seq)])
            let first = try post(r, to: ports[seq % 2]), again = try post(r, to: ports[(seq + 1) % 2])
            if !first.duplicate && first.storedSeries == 1 { stored += 1 }
            if again.duplicate && again.storedSeries == 0 { duplicates += 1 }
        }
        #expect(stored == 20 && duplicates == 20)
        for port in ports {
            let devices = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' http://127.0.0.1:\(port)/v1/devices")
            #expect(devices.contains("\"reports\":20"), "process on \(port): \(devices)")
            let series = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' -H 'X-Meetpunt-Reason: T-42' 'http://127.0.0.1:\(port)/v1/devices/pg-dev-1/series?metric=wifi.station.signal_dbm'")
            #expect(series.components(separatedBy: "\"seq\"").count - 1 == 20, "each process returns all twenty windows")
        }

        // A session started through A reaches the device long-polling B within a few seconds.
        let poll = Task.detached {
            try TestSupport.sh("curl -s -m 20 -H 'Authorization: Bearer \(deviceToken)' 'http://127.0.0.1:\(ports[1])/v1/session?wait=15&known=0'")
        }
        try await Task.sleep(for: .seconds(1))
        let started = try TestSupport.sh("curl -sf -H 'Authorization: Bearer \(operatorToken)' -H 'Content-Type: application/json' -d '{\"reason\": \"T-43 slow Wi-Fi\", \"minutes\": 5}' http://127.0.0.1:\(ports[0])/v1/devices/pg-dev-1/sessions")
        let answer = try await poll.value
        #expect(started.contains("\"id\"") && answer.contains("T-43 slow Wi-Fi"), "started: \(started)\npolled: \(answer)")

        let password = try String(contentsOfFile: try #require(pg.passwordFile), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        a.stop()
        b.stop()
        #expect(!password.isEmpty)
        #expect(!a.text.contains(password) && !b.text.contains(password) && !cliOutput.contains(password),
                "the database password is in no log line (trace level, PostgresNIO's own lines included)")
        #expect(cliOutput.contains("PostgresNIO"), "the trace-level lines were written, so the check above looked at them")
    }
}
