import ArgumentParser
import CollectorCore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TelemetryModel

@main
struct MeetpuntCollector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meetpunt-collector",
        abstract: "Meetpunt's collector: authenticates devices, stores aggregates, enforces retention, serves the query API.",
        version: "0.4.0",
        subcommands: [Serve.self, DeviceCommand.self, TokenCommand.self, SessionCommand.self, DashboardCommand.self, Purge.self, Export.self, Erase.self, AuditCommand.self,
                      Summary.self, LoadTest.self])
}

/// Loads configuration, retention policy and storage the same way for every subcommand.
struct CollectorOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Collector configuration file.")
    var config: String = "collector/collector.yaml"

    /// The configured store (not yet running) and an API over it. Only `create` makes a missing SQLite
    /// database (`serve`, and `device add` and `token add` before a first start); other commands refuse
    /// one, rather than report on a new, empty database made at a mistyped path.
    func open(logLevel: Logger.Level? = nil, create: Bool = false) throws(CollectorError) -> (StoreHandle, CollectorAPI) {
        // The database holds pseudonyms, token hashes and the audit trail: owner-only files and folders.
        umask(0o077)
        let configuration = try CollectorConfiguration.load(path: config)
        let policy = try RetentionPolicy.load(path: configuration.retentionFile)
        var logger = Logger(label: "meetpunt.collector")
        logger.logLevel = logLevel ?? Logger.Level(rawValue: configuration.logLevel) ?? .info
        if configuration.postgres == nil {
            guard create || FileManager.default.fileExists(atPath: configuration.sqlitePath) else {
                throw CollectorError(.storage, "no database at \(configuration.sqlitePath) (storage.sqlite_path in \(config)): "
                                     + "`serve`, `device add` or `token add` makes it")
            }
            let directory = (configuration.sqlitePath as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                    throw CollectorError(.storage, "cannot make the database folder \(directory): \(error.localizedDescription)")
                }
            }
        }
        let handle = try StoreHandle.open(configuration, logger: logger)
        return (handle, CollectorAPI(store: handle.store, policy: policy, configuration: configuration, logger: logger))
    }

    /// Runs `body` with the API over a ready store (PostgreSQL connected and migrated); a configuration
    /// or storage problem is one line on stderr and exit status 2.
    func withAPI<T>(logLevel: Logger.Level? = nil, create: Bool = false, _ body: (CollectorAPI) async throws -> T) async throws -> T {
        let (handle, api) = try Self.orExit { () throws(CollectorError) in try open(logLevel: logLevel, create: create) }
        do {
            return try await handle.run { _ in try await body(api) }
        } catch let e as CollectorError where e.code == .storage || e.code == .configuration {
            printError("meetpunt-collector: \(e.message)")
            throw ExitCode(2)
        }
    }

    static func orExit<T>(_ body: () throws(CollectorError) -> T) throws -> T {
        do { return try body() } catch {
            printError("meetpunt-collector: \(error.message)")
            throw ExitCode(2)
        }
    }

    /// Who ran the command, for the audit trail.
    static var cliActor: String { "cli:\(ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "root")" }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP API and the retention purge until SIGTERM/SIGINT.")
    @OptionGroup var options: CollectorOptions
    @Option(help: "Listen on this port instead of the configured one (0 picks a free port).")
    var port: Int?

    func run() async throws {
        let (handle, opened) = try CollectorOptions.orExit { () throws(CollectorError) in try options.open(create: true) }
        var api = opened
        if api.configuration.otlp != nil, let problem = FleetOTLPExport.environmentProblem() {
            printError("meetpunt-collector: \(problem)")
            throw ExitCode(2)
        }
        if let port {
            var c = api.configuration
            c.port = port
            var logger = Logger(label: "meetpunt.collector")
            logger.logLevel = Logger.Level(rawValue: c.logLevel) ?? .info
            api = CollectorAPI(store: api.store, policy: api.policy, configuration: c, logger: logger)
        }
        let purge = PurgeService(api: api, interval: .seconds(api.configuration.purgeIntervalSeconds))
        let fleetFlush = FleetFlushService(aggregator: api.fleet, store: api.store, logger: api.logger)
        let host = api.configuration.host
        if let tls = api.configuration.tls {
            FileHandle.standardOutput.write(Data("meetpunt-collector serving HTTPS only, certificate \(tls.certificateChainFile)\n".utf8))
        }
        do {
            // The store (PostgreSQL's connection pool) outlives the HTTP server: it stops after the last request.
            try await handle.run { _ in
                var services: [any Service] = [purge, fleetFlush, SessionExpiryService(api: api)]
                if let otlp = api.configuration.otlp {
                    services.append(FleetOTLPService(api: api, settings: otlp, serviceVersion: MeetpuntCollector.configuration.version))
                }
                let app = try buildApplication(api: api, services: services) { port in
                    FileHandle.standardOutput.write(Data("meetpunt-collector listening on \(host):\(port)\n".utf8))
                }
                try await app.runService()
            }
        } catch let e as CollectorError where e.code == .storage {
            printError("meetpunt-collector: \(e.message)")
            throw ExitCode(2)
        } catch {
            // One clear line and a non-zero exit: a collector that cannot serve must not look alive.
            printError("meetpunt-collector: serving on \(host):\(api.configuration.port) failed: \(error)")
            throw ExitCode(1)
        }
    }
}

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "device", abstract: "Manage devices.", subcommands: [Add.self, List.self, Config.self])

    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a device's remote settings, or set them (the agent applies them after its next upload).",
            discussion: #"Example: device config dev-7f3a --set '{"sampling": {"interval_seconds": 30, "window_seconds": 300}, "samplers": {"wifi": false}}'"#)
        @OptionGroup var options: CollectorOptions
        @Argument var id: String
        @Option(help: "New settings as JSON (see docs/protocol.md, Check-in).") var set: String?
        @Option(help: "Why (request or ticket reference), for the audit trail.") var reason: String?

        func run() async throws {
            try await options.withAPI(logLevel: .warning) { api in
                guard try await api.store.deviceExists(id) else { throw ValidationError("no device \(id)") }
                if let set {
                    let settings: AgentSettings
                    do { settings = try JSONDecoder().decode(AgentSettings.self, from: Data(set.utf8)) } catch {
                        throw ValidationError("--set is not valid settings JSON: \(CollectorAPI.describe(error))")
                    }
                    let doc: AgentSettingsDocument
                    do { doc = try await api.changeSettings(settings, device: id) } catch let e as APIError {
                        throw ValidationError("\(e.path.map { "\($0): " } ?? "")\(e.message)")
                    }
                    try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "change device settings",
                                                               deviceID: id, reason: reason, outcome: "ok", detail: "version=\(doc.version)"))
                }
                guard let doc = try await api.store.settings(device: id) else {
                    print("\(id): no remote settings; it runs its local configuration")
                    return
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print("\(id): version \(doc.version) \(String(decoding: try encoder.encode(doc.settings), as: UTF8.self))")
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a device and print its token (once; only a hash is stored).")
        @OptionGroup var options: CollectorOptions
        @Argument(help: "Pseudonymous device id (1–64 of A–Z a–z 0–9 - _ .).") var id: String
        @Option(help: "Also write the token to this file (mode 0600), for an agent on this host.") var tokenFile: String?

        func run() async throws {
            guard (1...64).contains(id.utf8.count), id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                throw ValidationError("device id must be 1–64 of A–Z a–z 0–9 - _ .")
            }
            if let found = IdentifierGuard().finding(in: id) {
                throw ValidationError("device id looks like a \(found.rawValue); use a pseudonymous id, never a hardware address")
            }
            try await options.withAPI(create: true) { api in
                let added = try await api.store.addDevice(id, nowMs: api.clock())
                let (token, record) = try await api.issueToken(role: .device, name: id, device: id)
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token add",
                                                           deviceID: id, reason: nil, outcome: "ok", detail: "id=\(record.id) role=device"))
                if let tokenFile {
                    _ = FileManager.default.createFile(atPath: tokenFile, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
                }
                printError(added ? "device \(id) registered" : "device \(id) already registered; issued an additional token")
                print(token)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices.")
        @OptionGroup var options: CollectorOptions
        func run() async throws {
            for d in try await options.withAPI(logLevel: .warning, { try await $0.store.devices() }) {
                print("\(d.id)\treports=\(d.reports)\tlast_seq=\(d.lastSeq.map(String.init) ?? "-")")
            }
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Manage operator and admin tokens.",
                                                    subcommands: [Add.self, List.self, Revoke.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token and print it (once).")
        @OptionGroup var options: CollectorOptions
        @Option(help: "operator or admin (device tokens come from `device add`).") var role: String
        @Option(help: "Who holds it, for the audit trail.") var name: String
        @Option(help: "Also write the token to this file (mode 0600).") var tokenFile: String?

        func run() async throws {
            guard let r = TokenRole(rawValue: role), r != .device else { throw ValidationError("--role must be operator or admin") }
            try await options.withAPI(create: true) { api in
                let (token, record) = try await api.issueToken(role: r, name: name, device: nil)
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token add",
                                                           deviceID: nil, reason: nil, outcome: "ok", detail: "id=\(record.id) role=\(role) name=\(name)"))
                if let tokenFile {
                    _ = FileManager.default.createFile(atPath: tokenFile, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
                }
                print(token)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their values).")
        @OptionGroup var options: CollectorOptions
        func run() async throws {
            for t in try await options.withAPI(logLevel: .warning, { try await $0.store.tokens() }) {
                print("\(t.id)\t\(t.role.rawValue)\t\(t.name)\t\(t.deviceID ?? "-")\t\(t.revokedAtMs == nil ? "active" : "revoked")")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id.")
        @OptionGroup var options: CollectorOptions
        @Argument var id: Int64
        func run() async throws {
            try await options.withAPI() { api in
                guard try await api.store.revokeToken(id: id, nowMs: api.clock()) else { throw ValidationError("no active token \(id)") }
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token revoke",
                                                           deviceID: nil, reason: nil, outcome: "ok", detail: "id=\(id)"))
                print("revoked \(id)")
            }
        }
    }
}

struct Purge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete expired data now and print the counts per class.")
    @OptionGroup var options: CollectorOptions
    @Flag(help: "Count what would be deleted without deleting.") var dryRun = false

    func run() async throws {
        try await options.withAPI(logLevel: .warning) { api in
            let counts = try await api.store.purge(cutoffs: api.policy.cutoffs(nowMs: api.clock()), dryRun: dryRun)
            for (k, v) in counts.sorted(by: { $0.key < $1.key }) { print("\(k)\t\(v)\(dryRun ? " (dry run)" : "")") }
        }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print all data held for a device (JSON, or CSV for one metric).")
    @OptionGroup var options: CollectorOptions
    @Argument var id: String
    @Option(help: "json or csv") var format = "json"
    @Option(help: "The metric, for CSV.") var metric: String?
    @Option(help: "Why (request or ticket reference), for the audit trail.") var reason: String?

    func validate() throws {
        guard format == "json" || format == "csv" else { throw ValidationError("--format must be json or csv") }
        if format == "csv", metric == nil { throw ValidationError("CSV export is per metric: add --metric NAME") }
    }

    func run() async throws {
        try await options.withAPI(logLevel: .warning) { api in
            guard try await api.store.deviceExists(id) else { throw ValidationError("no device \(id)") }
            let export = try await api.exportData(device: id)
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "export device data",
                                                       deviceID: id, reason: reason, outcome: "ok", detail: format))
            if format == "csv" {
                guard let metric else { throw ValidationError("CSV export is per metric: add --metric NAME") }
                print(DeviceExport.csv(export.classes.values.flatMap(\.windows).filter { $0.metric == metric }), terminator: "")
            } else {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try encoder.encode(export), as: UTF8.self))
            }
        }
    }
}

struct Erase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete every data row of a device; it can report again afterwards.")
    @OptionGroup var options: CollectorOptions
    @Argument var id: String
    @Option(help: "Why (request or ticket reference), for the audit trail.") var reason: String?

    func run() async throws {
        try await options.withAPI(logLevel: .warning) { api in
            guard try await api.store.deviceExists(id) else { throw ValidationError("no device \(id)") }
            let counts = try await api.store.erase(device: id)
            let detail = counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "erase device data",
                                                       deviceID: id, reason: reason, outcome: "ok", detail: detail))
            print("erased \(id): \(detail)")
        }
    }
}

struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dashboard", abstract: "The web dashboard under /ui.", subcommands: [LoginLink.self])

    struct LoginLink: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "login-link",
            abstract: "Print a one-time dashboard login link (a path; put the collector's address in front) for an operator.",
            discussion: "Logs in as the operator token named --name, which is created when there is none. The link works once, for --minutes.")
        @OptionGroup var options: CollectorOptions
        @Option(help: "The operator token's name.") var name = "dashboard"
        @Option(help: "How long the link stays valid.") var minutes = 30

        func run() async throws {
            guard (1...1440).contains(minutes) else { throw ValidationError("--minutes must be 1 to 1440") }
            try await options.withAPI(logLevel: .warning) { api in
                var token = try await api.store.tokens().last { $0.name == name && $0.revokedAtMs == nil && ($0.role == .operator_ || $0.role == .admin) }
                if token == nil {
                    let (_, record) = try await api.issueToken(role: .operator_, name: name, device: nil)
                    token = record
                    try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token add", deviceID: nil,
                                                               reason: nil, outcome: "ok", detail: "id=\(record.id) role=operator name=\(name) (for a login link)"))
                }
                let path = try await Dashboard(api: api).loginLink(token: token!, minutes: minutes)
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "dashboard login link", deviceID: nil,
                                                           reason: nil, outcome: "ok", detail: "token=\(name) minutes=\(minutes)"))
                print(path)
            }
        }
    }
}

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "session", abstract: "Troubleshooting sessions: high-resolution data from one device for a while.",
                                                    subcommands: [Start.self, Stop.self, List.self])

    static func line(_ s: TroubleshootingSession, nowMs: Int64) -> String {
        let iso = ISO8601DateFormatter()
        let state = s.isRunning(at: nowMs) ? "running, \((s.endMs - nowMs + 999) / 1000) s left" : (s.stoppedAtMs != nil ? "stopped by \(s.stoppedBy ?? "?")" : "ended")
        return "\(s.id)\t\(s.deviceID)\t\(iso.string(from: Date(timeIntervalSince1970: Double(s.startedAtMs) / 1000)))\t\(state)\t\(s.intervalSeconds)s/\(s.windowSeconds)s\t\(s.actor)\t\(s.reason)"
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a session; the agent switches to the session profile at its next check-in (within a second when it is online).")
        @OptionGroup var options: CollectorOptions
        @Argument var device: String
        @Option(help: "Why (request or ticket reference), for the audit trail.") var reason: String
        @Option(help: "How long, in minutes (default: sessions.default_minutes).") var minutes: Int?

        func run() async throws {
            try await options.withAPI(logLevel: .warning) { api in
                do {
                    let s = try await api.startSession(device: device, actor: CollectorOptions.cliActor, reason: reason, seconds: minutes.map { $0 * 60 })
                    print(SessionCommand.line(s, nowMs: api.clock()))
                } catch let e as APIError { throw ValidationError("\(e.path.map { "\($0): " } ?? "")\(e.message)") }
            }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the device's running session; the agent reverts at its next check-in.")
        @OptionGroup var options: CollectorOptions
        @Argument var device: String
        @Option(help: "Why, for the audit trail.") var reason: String?

        func run() async throws {
            try await options.withAPI(logLevel: .warning) { api in
                guard let s = try await api.store.runningSession(device: device, nowMs: api.clock()) else {
                    throw ValidationError("no troubleshooting session is running for \(device)")
                }
                do { try await api.stopSession(device: device, id: s.id, actor: CollectorOptions.cliActor, reason: reason) } catch let e as APIError {
                    throw ValidationError(e.message)
                }
                print("session \(s.id) of \(device) stopped")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sessions, newest first: id, device, start, state, profile, who, reason.")
        @OptionGroup var options: CollectorOptions
        @Argument var device: String?
        @Option(help: "At most this many.") var limit = 50

        func run() async throws {
            try await options.withAPI(logLevel: .warning) { api in
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "list troubleshooting sessions",
                                                           deviceID: device, reason: nil, outcome: "ok"))
                let now = api.clock()
                for s in try await api.store.sessions(device: device, limit: limit) { print(SessionCommand.line(s, nowMs: now)) }
            }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "List the audit trail, newest first.")
    @OptionGroup var options: CollectorOptions
    @Option(help: "Only entries about this device.") var device: String?
    @Option(help: "At most this many entries.") var limit = 100

    func run() async throws {
        try await options.withAPI(logLevel: .warning) { api in
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "read audit trail",
                                                       deviceID: device, reason: nil, outcome: "ok"))
            let entries = try await api.store.audit(device: device, sinceMs: api.policy.cutoffMs(.audit, nowMs: api.clock()), limit: limit)
            let iso = ISO8601DateFormatter()
            for e in entries {
                let at = iso.string(from: Date(timeIntervalSince1970: Double(e.atMs) / 1000))
                print("\(at)\t\(e.actor)\t\(e.action)\t\(e.deviceID ?? "-")\t\(e.outcome)\t\(e.reason ?? "-")\t\(e.detail ?? "")")
            }
        }
    }
}

struct Summary: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a readable summary of what the collector holds.")
    @OptionGroup var options: CollectorOptions

    func run() async throws {
        try await options.withAPI(logLevel: .warning) { api in
            let now = api.clock()
            let devices = try await api.store.devices()
            try await api.store.appendAudit(AuditEntry(atMs: now, actor: CollectorOptions.cliActor, action: "summary",
                                                       deviceID: nil, reason: nil, outcome: "ok", detail: "\(devices.count) devices"))
            print("Meetpunt collector: \(devices.count) device(s)")
            for d in devices {
                let windows = try await api.store.windows(device: d.id, metric: nil, fromMs: 0, toMs: Int64.max,
                                                          cutoffs: api.policy.cutoffs(nowMs: now), limit: Int.max)
                let reportWindows = Set(windows.map(\.seq)).count
                print("\ndevice \(d.id): \(reportWindows) report window(s), last seq \(d.lastSeq.map(String.init) ?? "-")")
                let linkWindows = windows.filter { $0.metric.hasPrefix("link.") }
                let interfaces = Set(linkWindows.compactMap { $0.labels["interface"] }).sorted()
                if interfaces.isEmpty { print("  no link data yet") }
                for name in interfaces {
                    let mine = linkWindows.filter { $0.labels["interface"] == name }
                    func total(_ m: String) -> Double { mine.filter { $0.metric == m }.reduce(0) { $0 + $1.sum } }
                    func latest(_ m: String) -> StoredWindow? { mine.filter { $0.metric == m }.max { $0.windowEndMs < $1.windowEndMs } }
                    let speed = latest("link.speed").map { "\(Self.count($0.last)) Mb/s" } ?? "speed unknown"
                    let duplex = latest("link.full_duplex").map { $0.last == 1 ? "full duplex" : "half duplex" } ?? ""
                    let up = latest("link.oper_up").map { $0.last == 1 ? "up" : "down" } ?? "?"
                    // Rates from the newest full-length window: a stopped agent's last, partial window may
                    // last a few milliseconds.
                    let full = { (m: String) in mine.filter { $0.metric == m }.newestFullLength() }
                    func rates(_ w: StoredWindow?) -> String {
                        guard let w else { return "-" }
                        return "mean \(Self.rate(w.mean)), p99 \(Self.rate(w.sketch?.quantile(0.99) ?? w.max))"
                    }
                    let rx = full("link.rx_rate"), tx = full("link.tx_rate")
                    print("  \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(up), \(speed)\(duplex.isEmpty ? "" : ", " + duplex)")
                    print("    rx \(Self.count(total("link.rx_packets"))) packets / \(Self.count(total("link.rx_bytes"))) bytes, tx \(Self.count(total("link.tx_packets"))) packets / \(Self.count(total("link.tx_bytes"))) bytes")
                    let span = (rx ?? tx).map { " (\(Self.count(Double($0.windowEndMs - $0.windowStartMs) / 1000)) s)" } ?? ""
                    print("    latest full window\(span): rx \(rates(rx)); tx \(rates(tx))")
                }
                let clients = windows.filter { $0.metric == "lan.clients" }
                if let c = clients.max(by: { $0.windowEndMs < $1.windowEndMs }) {
                    print("  LAN clients (latest window, \(c.labels["interface"] ?? "?")): \(Self.count(c.last))")
                }
            }
        }
    }

    /// A whole number for display; never traps on a huge stored value.
    static func count(_ x: Double) -> String { String(format: "%.0f", x) }

    static func rate(_ bps: Double) -> String {
        switch bps {
        case ..<1e3: return String(format: "%.0f bit/s", bps)
        case ..<1e6: return String(format: "%.1f kbit/s", bps / 1e3)
        case ..<1e9: return String(format: "%.1f Mbit/s", bps / 1e6)
        default: return String(format: "%.2f Gbit/s", bps / 1e9)
        }
    }
}
