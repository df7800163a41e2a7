import CollectorCore
import Foundation
import Logging
import Testing

/// The storage backends every conformance test runs on.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// The backends this machine can run: PostgreSQL is left out, with a line saying why, where it is
    /// missing (CI installs it, so there the line would be a setup failure to look at).
    static var testable: [Backend] {
        if TestDatabases.postgresAvailable { return allCases }
        print("warning: the PostgreSQL cases of the storage conformance suite are skipped: MEETPUNT_TEST_POSTGRES is not set (scripts/test.sh sets it; alone: export MEETPUNT_TEST_POSTGRES=\"$(scripts/postgres/cluster.sh start | tail -1)\")")
        return [.sqlite]
    }
}

/// Fresh, empty databases for tests: an SQLite file in a temporary folder, or a new database in the
/// PostgreSQL cluster on loopback that `scripts/postgres/cluster.sh` starts (or the one named by
/// `MEETPUNT_TEST_POSTGRES`, in that script's `host=… port=… user=… password_file=…` form).
enum TestDatabases {
    /// The server comes from `MEETPUNT_TEST_POSTGRES`, which scripts/test.sh sets from
    /// `scripts/postgres/cluster.sh start` (run by hand, then export its line, to run these tests alone).
    /// The tests do not start the server themselves: spawned from the test process through Foundation's
    /// Process, the daemon's start left the shell unreaped and the suite hung (CI, 2026-12-02).
    static var postgresAvailable: Bool { ProcessInfo.processInfo.environment["MEETPUNT_TEST_POSTGRES"] != nil }

    /// The server named in the environment.
    static let server: Result<CollectorConfiguration.PostgresSettings, any Error> = Result {
        let line = ProcessInfo.processInfo.environment["MEETPUNT_TEST_POSTGRES"] ?? ""
        var fields: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        guard let host = fields["host"], let port = fields["port"].flatMap(Int.init), let user = fields["user"] else {
            throw CollectorError(.configuration, "cannot read the PostgreSQL server from \"\(line)\"")
        }
        return CollectorConfiguration.PostgresSettings(host: host, port: port, database: "postgres", user: user,
                                                       passwordFile: fields["password_file"], tls: "disable", maxConnections: 8)
    }

    /// `psql` against the server's `postgres` database. The password goes in psql's environment, never on
    /// a command line (where `ps` and a failed command's message would show it).
    static func psql(_ settings: CollectorConfiguration.PostgresSettings, database: String = "postgres", _ sql: String) throws -> String {
        let password = try settings.passwordFile.map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        process.arguments = ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", settings.host, "-p", String(settings.port),
                             "-U", settings.user, "-d", database, "-c", sql]
        var environment = ProcessInfo.processInfo.environment
        environment["PGPASSWORD"] = password
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else { throw TestFailure("psql -d \(database) -c \"\(sql)\" failed (\(process.terminationStatus)): \(text)") }
        return text
    }

    /// A `psql` session that runs `sql` in an open transaction and then stays idle in it, holding the
    /// locks its statements took until ``finish()``: what a long report query or a forgotten session of an
    /// operator does to the collector.
    final class HeldTransaction: @unchecked Sendable {
        private let process = Process()
        private let input = Pipe()
        private let output = Pipe()
        private var finished = false

        /// Returns once `sql` has run: its last statement must print one line (psql -t -A).
        init(_ settings: CollectorConfiguration.PostgresSettings, _ sql: String) throws {
            let password = try settings.passwordFile.map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
            process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
            process.arguments = ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", settings.host, "-p", String(settings.port),
                                 "-U", settings.user, "-d", settings.database]
            var environment = ProcessInfo.processInfo.environment
            environment["PGPASSWORD"] = password
            process.environment = environment
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            input.fileHandleForWriting.write(Data("BEGIN;\n\(sql)\n".utf8))
            // psql answers the statement once it ran: the locks are held from here on.
            var seen = Data()
            while !seen.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                guard !chunk.isEmpty else { throw TestFailure("psql ended before answering \(sql): \(String(decoding: seen, as: UTF8.self))") }
                seen.append(chunk)
            }
        }

        /// Commits and waits for psql to end; a second call does nothing.
        func finish() {
            guard !finished else { return }
            finished = true
            input.fileHandleForWriting.write(Data("COMMIT;\n".utf8))
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }

        deinit { finish() }
    }

    /// A collector configuration whose store is a new, empty database of `backend`.
    static func configuration(_ backend: Backend) throws -> CollectorConfiguration {
        let dir = try TestSupport.tempDirectory()
        var c = CollectorConfiguration(sqlitePath: dir.appendingPathComponent("collector.sqlite").path, retentionFile: "")
        c.port = 0
        if backend == .postgres {
            var settings = try server.get()
            settings.database = "meetpunt_test_\(TestSupport.uniqueSuffix())_\(UInt32.random(in: 0..<1_000_000))"
            _ = try psql(settings, "CREATE DATABASE \(settings.database)")
            c.postgres = settings
        }
        return c
    }

    /// Runs `body` with a ready store on a new, empty database of `backend`; the PostgreSQL database is
    /// dropped afterwards.
    static func withStore<T>(_ backend: Backend, _ body: (any TelemetryStore, CollectorConfiguration) async throws -> T) async throws -> T {
        let c = try configuration(backend)
        defer {
            if let settings = c.postgres { _ = try? psql(settings, "DROP DATABASE IF EXISTS \(settings.database) WITH (FORCE)") }
        }
        var logger = Logger(label: "test.store")
        logger.logLevel = .warning
        let handle = try StoreHandle.open(c, logger: logger)
        return try await handle.run { store in try await body(store, c) }
    }
}
