import Foundation
import HTTPTypes
import GzipCodec
import Hummingbird
import Logging
import TelemetryModel

/// Milliseconds since the Unix epoch; injected so tests can move time (retention) without waiting.
public typealias CollectorClock = @Sendable () -> Int64

public let systemClock: CollectorClock = { Int64(Date().timeIntervalSince1970 * 1000) }

/// The collector's request handling, independent of how it is served. `buildApplication` wires it to a
/// router; tests call the same function.
public struct CollectorAPI: Sendable {
    public let store: any TelemetryStore
    public let policy: RetentionPolicy
    public let configuration: CollectorConfiguration
    public let clock: CollectorClock
    let validator: ReportValidator
    public let logger: Logger

    /// Fleet aggregates merged from every stored report, flushed to the store by ``FleetFlushService``.
    public let fleet: FleetAggregator
    /// The collector's own health for `GET /metrics`.
    public let metrics: CollectorMetrics

    public init(store: any TelemetryStore, policy: RetentionPolicy, configuration: CollectorConfiguration,
                clock: @escaping CollectorClock = systemClock, fleet: FleetAggregator = FleetAggregator(),
                metrics: CollectorMetrics = CollectorMetrics(), logger: Logger) {
        self.store = store
        self.fleet = fleet
        self.metrics = metrics
        self.policy = policy
        self.configuration = configuration
        self.clock = clock
        self.validator = ReportValidator(limits: configuration.validatorLimits,
                                         identifierGuard: IdentifierGuard(ssids: configuration.guardSSIDs))
        self.logger = logger
    }

    // MARK: Authentication and authorisation

    /// The caller, or 401. A revoked or unknown token is 401; the message never echoes the token.
    func authenticate(_ request: Request) async throws -> Principal {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "missing_token", "Authorization: Bearer <token> header is required")
        }
        guard header.hasPrefix("Bearer "), case let token = String(header.dropFirst(7)), !token.isEmpty else {
            throw APIError(.unauthorized, "malformed_token", "Authorization header must be 'Bearer <token>'")
        }
        let hash = BearerToken.hash(token)
        guard let (record, stored) = try await store.token(hash: hash), BearerToken.equal(hash, stored) else {
            throw APIError(.unauthorized, "invalid_token", "token is not valid")
        }
        guard record.revokedAtMs == nil else { throw APIError(.unauthorized, "revoked_token", "token has been revoked") }
        return Principal(token: record)
    }

    /// The caller if their role is one of `roles`; otherwise 403, and the refusal is audited.
    func authorize(_ request: Request, roles: Set<TokenRole>, action: String, device: String?) async throws -> Principal {
        let principal = try await authenticate(request)
        guard roles.contains(principal.token.role) else {
            try await audit(principal, action: action, device: device, request: request, outcome: "denied",
                            detail: "role \(principal.token.role.rawValue) may not \(action)")
            throw APIError(.forbidden, "forbidden", "role \(principal.token.role.rawValue) may not \(action); needs \(roles.map(\.rawValue).sorted().joined(separator: " or "))")
        }
        return principal
    }

    func audit(_ principal: Principal, action: String, device: String?, request: Request, outcome: String, detail: String? = nil) async throws {
        // The stated reason is free text from the caller: printable characters only, bounded, and no raw
        // identifiers (a ticket text may quote a customer's address).
        let reason = request.headers[HTTPField.Name("X-Meetpunt-Reason")!].map { Self.sanitizeReason($0, guard: validator.identifierGuard) }
        try await store.appendAudit(AuditEntry(atMs: clock(), actor: principal.actor, action: action, deviceID: device,
                                               reason: reason, outcome: outcome, detail: detail))
    }

    // MARK: Ingest

    /// `POST /v1/reports`: one report. Kept for agents before 0.3, which send one report per request.
    public func ingest(_ request: Request) async throws -> Response {
        let started = ContinuousClock.now
        defer { metrics.ingestSeconds.record(ContinuousClock.now - started) }
        do {
            let response = try await ingestOne(request)
            metrics.requests.increment()
            metrics.batchReports.record(1.0)
            return response
        } catch let e as APIError where e.status == .unprocessableContent || e.status == .badRequest {
            metrics.rejected(reason: e.code)
            throw e
        }
    }

    private func ingestOne(_ request: Request) async throws -> Response {
        let (principal, tokenDevice) = try await authenticateDevice(request)
        let bytes = try await readBody(request)
        let report: Report
        do { report = try JSONDecoder().decode(Report.self, from: Data(bytes)) } catch {
            throw APIError(.badRequest, "malformed_report", "report is not valid JSON for schema \(Report.currentSchemaVersion): \(Self.describe(error))")
        }
        let ack: ReportAcknowledgement
        switch try await accept(report, tokenDevice: tokenDevice, principal: principal, request: request) {
        case .stored(let n): ack = ReportAcknowledgement(device: report.device, seq: report.seq, duplicate: false, storedSeries: n)
        case .duplicate: ack = ReportAcknowledgement(device: report.device, seq: report.seq, duplicate: true, storedSeries: 0)
        }
        let data = try JSONEncoder().encode(ack)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// `POST /v1/report-batches`: `{"reports": [report, ...]}`, oldest first. Each report is accepted or
    /// rejected on its own and answered in a ``BatchAcknowledgement``; a report that cannot even be read
    /// far enough to know its `seq`, or a batch over the limits, fails the whole request (400/413), and
    /// nothing of it is stored. A report's idempotency key is (device, seq): a batch that is sent again
    /// after a lost answer is acknowledged `duplicate` and stored once.
    public func ingestBatch(_ request: Request) async throws -> Response {
        let started = ContinuousClock.now
        defer { metrics.ingestSeconds.record(ContinuousClock.now - started) }
        let (principal, tokenDevice) = try await authenticateDevice(request)
        let bytes = try await readBody(request)
        let batch: ReportBatch
        switch ReportBatchReader.read(bytes, maxReports: configuration.maxReportsPerBatch) {
        case .reports(let reports):
            // The fast path read the body exactly as JSONDecoder would have; anything else goes to JSONDecoder.
            batch = ReportBatch(reports: reports.map { ReportBatch.Entry(seq: $0.seq, report: .success($0)) })
        case .tooMany:
            throw APIError(.contentTooLarge, "batch_too_large", "a batch holds at most \(configuration.maxReportsPerBatch) reports, this one more than \(configuration.maxReportsPerBatch)", path: "reports")
        case .undecided:
            do { batch = try JSONDecoder().decode(ReportBatch.self, from: Data(bytes)) } catch {
                throw APIError(.badRequest, "malformed_batch", "batch is not {\"reports\": [...]} with a seq in every report: \(Self.describe(error))")
            }
        }
        guard !batch.reports.isEmpty else { throw APIError(.badRequest, "empty_batch", "a batch holds at least one report", path: "reports") }
        guard batch.reports.count <= configuration.maxReportsPerBatch else {
            throw APIError(.contentTooLarge, "batch_too_large", "a batch holds at most \(configuration.maxReportsPerBatch) reports, this one \(batch.reports.count)", path: "reports")
        }
        // Every report is checked first; those that pass are stored together in one transaction.
        var results: [BatchAcknowledgement.Result?] = Array(repeating: nil, count: batch.reports.count)
        var accepted: [(index: Int, report: Report, classes: [DataClass])] = []
        let now = clock()
        for (i, entry) in batch.reports.enumerated() {
            switch entry.report {
            case .failure(let error):
                results[i] = .init(seq: entry.seq, status: .rejected, error: .init(
                    code: "malformed_report", message: "report is not valid JSON for schema \(Report.currentSchemaVersion): \(Self.describe(error))",
                    path: "reports[\(i)]"))
            case .success(let report):
                do {
                    accepted.append((i, report, try await check(report, tokenDevice: tokenDevice, principal: principal, request: request, nowMs: now)))
                } catch let e as APIError where e.status == .unprocessableContent || e.status == .badRequest {
                    results[i] = .init(seq: report.seq, status: .rejected,
                                       error: .init(code: e.code, message: e.message, path: "reports[\(i)]" + (e.path.map { ".\($0)" } ?? "")))
                }
            }
        }
        let outcomes = try await store.ingest(accepted.map { ($0.report, $0.classes) }, receivedAtMs: now)
        for (a, outcome) in zip(accepted, outcomes) {
            switch outcome {
            case .stored(let n):
                results[a.index] = .init(seq: a.report.seq, status: .stored, storedSeries: n)
                if a.report.troubleshootingSession == nil { await fleet.add(a.report) }  // session windows would weigh one device ten times
                metrics.countStored()
                metrics.agentReported(a.report)
            case .duplicate:
                results[a.index] = .init(seq: a.report.seq, status: .duplicate)
                metrics.countDuplicate()
            }
        }
        for case let r? in results where r.status == .rejected { metrics.rejected(reason: r.error?.code ?? "rejected") }
        metrics.requests.increment()
        metrics.batchReports.record(Double(batch.reports.count))
        let configVersion = try await store.settings(device: tokenDevice)?.version
        return try jsonResponse(BatchAcknowledgement(device: tokenDevice, results: results.compactMap { $0 }, configVersion: configVersion))
    }

    /// The device principal of a write, or 401/403 (audited).
    func authenticateDevice(_ request: Request) async throws -> (Principal, String) {
        let principal = try await authenticate(request)
        guard principal.token.role == .device, let tokenDevice = principal.token.deviceID else {
            try await audit(principal, action: "write reports", device: nil, request: request, outcome: "denied",
                            detail: "role \(principal.token.role.rawValue) may not write reports")
            throw APIError(.forbidden, "forbidden", "only device tokens may write reports")
        }
        return (principal, tokenDevice)
    }

    /// The request body, inflated when gzip, within the configured limits.
    func readBody(_ request: Request) async throws -> [UInt8] {
        var compressed: ByteBuffer
        do { compressed = try await request.body.collect(upTo: configuration.maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "body_too_large", "request body exceeds \(configuration.maxBodyBytes) bytes")
        }
        let bytes = compressed.readBytes(length: compressed.readableBytes) ?? []
        switch request.headers[.contentEncoding]?.lowercased() {
        case nil, "identity":
            guard bytes.count <= configuration.maxDecompressedBytes else {
                throw APIError(.contentTooLarge, "body_too_large", "request body exceeds \(configuration.maxDecompressedBytes) bytes")
            }
            return bytes
        case "gzip":
            return try Self.inflate(bytes, limit: configuration.maxDecompressedBytes)
        case let other?:
            throw APIError(.unsupportedMediaType, "unsupported_encoding", "Content-Encoding \(other) is not supported; use gzip or none")
        }
    }

    /// Validates and stores one report sent with `tokenDevice`'s token: the rules every write path shares.
    func accept(_ report: Report, tokenDevice: String, principal: Principal, request: Request) async throws -> IngestOutcome {
        let now = clock()
        let classes = try await check(report, tokenDevice: tokenDevice, principal: principal, request: request, nowMs: now)
        let outcome = try await store.ingest([(report, classes)], receivedAtMs: now)[0]
        switch outcome {
        case .stored:
            if report.troubleshootingSession == nil { await fleet.add(report) }
            metrics.countStored()
            metrics.agentReported(report)
        case .duplicate: metrics.countDuplicate()
        }
        return outcome
    }

    /// The rules every report must pass before it is stored; returns its series' data classes.
    func check(_ report: Report, tokenDevice: String, principal: Principal, request: Request, nowMs now: Int64) async throws -> [DataClass] {
        // The claimed id is checked before it is compared, and never echoed or audited: it is device input.
        if let v = validator.validateDeviceID(report.device) {
            throw APIError(.unprocessableContent, "invalid_report", v.message, path: v.path)
        }
        guard report.device == tokenDevice else {
            try await audit(principal, action: "write reports", device: tokenDevice, request: request, outcome: "denied",
                            detail: "token of device \(tokenDevice) used for another device")
            throw APIError(.forbidden, "wrong_device", "this token writes for device \(tokenDevice) only", path: "device")
        }
        if let v = validator.validate(report, nowMs: now) {
            throw APIError(.unprocessableContent, "invalid_report", v.message, path: v.path)
        }
        var classes = report.series.map { MetricCatalog.descriptor(named: $0.metric)!.dataClass }
        if let session = report.troubleshootingSession {
            // Sampled for a troubleshooting session of this device: kept as troubleshooting data (short
            // retention), whatever the metrics' own classes.
            guard let s = try await store.sessions(device: report.device, limit: 200).first(where: { $0.id == session }),
                  report.windowStartMs >= s.startedAtMs - 60_000, report.windowStartMs <= s.endMs + 60_000 else {
                throw APIError(.unprocessableContent, "invalid_report", "troubleshooting session \(session) is not one of this device's sessions, or the window lies outside it",
                               path: "troubleshooting_session")
            }
            classes = classes.map { _ in .troubleshooting }
        }
        for (i, c) in classes.enumerated() where report.windowEndMs < policy.cutoffMs(c, nowMs: now) {
            throw APIError(.unprocessableContent, "expired", "window ended \((now - report.windowEndMs) / RetentionPolicy.millisecondsPerDay) days ago; data class \(c) is kept at most \(policy.maxAgeDays[c]!) days",
                           path: "series[\(i)]")
        }
        return classes
    }

    static func inflate(_ bytes: [UInt8], limit: Int) throws -> [UInt8] {
        let result = Result { () throws(GzipError) -> [UInt8] in try Gzip.decompress(bytes, limit: limit) }
        switch result {
        case .success(let inflated): return inflated
        case .failure(let e) where e.code == .tooLarge:
            throw APIError(.contentTooLarge, "body_too_large", "decompressed body exceeds \(limit) bytes")
        case .failure(let e): throw APIError(.badRequest, "bad_encoding", e.message)
        }
    }

    /// A decoding error as a path and a reason, without echoing input.
    public static func describe(_ error: any Error) -> String {
        // Other decoder errors (a number too large for its type) carry the raw input: not echoed.
        guard let e = error as? DecodingError else { return "a value cannot be read (a number out of range for its field, or not JSON)" }
        func path(_ c: [any CodingKey]) -> String {
            c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch e {
        case .keyNotFound(let key, let ctx): return "missing key \(path(ctx.codingPath + [key]))"
        case .typeMismatch(_, let ctx): return "wrong type at \(path(ctx.codingPath)): \(ctx.debugDescription)"
        case .valueNotFound(_, let ctx): return "missing value at \(path(ctx.codingPath))"
        case .dataCorrupted(let ctx):
            let p = path(ctx.codingPath)
            return p.isEmpty ? "\(ctx.debugDescription)" : "invalid value at \(p): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// A batch as read: each report decoded on its own, so one bad report is rejected alone.
    struct ReportBatch: Decodable {
        struct Entry: Decodable {
            let seq: UInt64
            let report: Result<Report, any Error>
            init(seq: UInt64, report: Result<Report, any Error>) {
                self.seq = seq
                self.report = report
            }
            init(from decoder: any Decoder) throws {
                enum Key: String, CodingKey { case seq }
                seq = try decoder.container(keyedBy: Key.self).decode(UInt64.self, forKey: .seq)
                do { report = .success(try Report(from: decoder)) } catch { report = .failure(error) }
            }
        }
        let reports: [Entry]
        init(reports: [Entry]) { self.reports = reports }
        init(from decoder: any Decoder) throws {
            enum Key: String, CodingKey { case reports }
            reports = try decoder.container(keyedBy: Key.self).decode([Entry].self, forKey: .reports)
        }
    }

    // MARK: Reads

    public func listDevices(_ request: Request) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "list devices", device: nil)
        try await audit(p, action: "list devices", device: nil, request: request, outcome: "ok")
        return try jsonResponse(["devices": try await store.devices()])
    }

    func requireDevice(_ id: String) async throws {
        guard try await store.deviceExists(id) else { throw APIError(.notFound, "unknown_device", "no device \(id)") }
    }

    func int64Parameter(_ request: Request, _ name: String, default value: Int64) throws -> Int64 {
        guard let text = request.uri.queryParameters.get(name) else { return value }
        guard let n = Int64(text) else { throw APIError(.badRequest, "bad_parameter", "\(name) must be milliseconds since the Unix epoch", path: name) }
        return n
    }

    public func series(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "read series", device: device)
        try await requireDevice(device)
        let metric = request.uri.queryParameters.get("metric")
        if let metric, MetricCatalog.descriptor(named: metric) == nil {
            throw APIError(.badRequest, "unknown_metric", "unknown metric \(metric); see docs/metrics.md", path: "metric")
        }
        let now = clock()
        let from = try int64Parameter(request, "from", default: 0)
        let to = try int64Parameter(request, "to", default: now + 1)
        guard from < to else { throw APIError(.badRequest, "bad_range", "from must be before to", path: "from") }
        try await audit(p, action: "read series", device: device, request: request, outcome: "ok", detail: metric)
        let windows = try await store.windows(device: device, metric: metric, fromMs: from, toMs: to,
                                              cutoffs: policy.cutoffs(nowMs: now), limit: 100_000)
        return try jsonResponse(SeriesAnswer(device: device, metric: metric, windows: windows))
    }

    struct SeriesAnswer: Encodable {
        let device: String
        let metric: String?
        let windows: [StoredWindow]
    }

    // MARK: Subject rights

    /// Everything held for `device`, every class, with the retention that applies to each.
    public func exportData(device: String) async throws -> DeviceExport {
        let now = clock()
        let windows = try await store.windows(device: device, metric: nil, fromMs: 0, toMs: Int64.max,
                                              cutoffs: policy.cutoffs(nowMs: now), limit: Int.max)
        var classes: [String: DeviceExport.ClassData] = [:]
        // Fleet aggregates hold nothing of one device: they are not part of its export.
        for c in policy.maxAgeDays.keys where c != .audit && c != .fleet {
            classes[c.rawValue] = .init(retentionDays: policy.maxAgeDays[c]!, windows: windows.filter { $0.dataClass == c.rawValue })
        }
        let audit = try await store.audit(device: device, sinceMs: policy.cutoffMs(.audit, nowMs: now), limit: 100_000)
        return DeviceExport(device: device, exportedAtMs: now, classes: classes,
                            audit: .init(retentionDays: policy.maxAgeDays[.audit]!, entries: audit))
    }

    public func export(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.admin], action: "export device data", device: device)
        try await requireDevice(device)
        let format = request.uri.queryParameters.get("format") ?? "json"
        guard format == "json" || format == "csv" else {
            throw APIError(.badRequest, "bad_parameter", "format must be json or csv", path: "format")
        }
        let metric = request.uri.queryParameters.get("metric")
        if format == "csv", metric == nil {
            throw APIError(.badRequest, "bad_parameter", "CSV export is per metric: add metric=NAME", path: "metric")
        }
        try await audit(p, action: "export device data", device: device, request: request, outcome: "ok", detail: format)
        let data = try await exportData(device: device)
        if format == "csv", let metric {
            let csv = DeviceExport.csv(data.classes.values.flatMap(\.windows).filter { $0.metric == metric })
            return Response(status: .ok, headers: [.contentType: "text/csv"], body: .init(byteBuffer: ByteBuffer(string: csv)))
        }
        return try jsonResponse(data)
    }

    public func erase(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.admin], action: "erase device data", device: device)
        try await requireDevice(device)
        let counts = try await store.erase(device: device)
        try await audit(p, action: "erase device data", device: device, request: request, outcome: "ok",
                        detail: counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        return try jsonResponse(EraseAnswer(device: device, deleted: counts))
    }

    struct EraseAnswer: Encodable {
        let device: String
        let deleted: [String: Int]
    }

    // MARK: Tokens and audit

    struct TokenRequest: Decodable {
        let role: String
        let name: String
        let device: String?
    }

    struct TokenCreated: Encodable {
        let id: Int64
        let role: String
        let name: String
        let device: String?
        /// Shown once; only its hash is stored.
        let token: String
    }

    public func createToken(_ request: Request) async throws -> Response {
        let p = try await authorize(request, roles: [.admin], action: "manage tokens", device: nil)
        var body = try await request.body.collect(upTo: 64 * 1024)
        guard let bytes = body.readBytes(length: body.readableBytes),
              let t = try? JSONDecoder().decode(TokenRequest.self, from: Data(bytes)) else {
            throw APIError(.badRequest, "malformed_request", "expected JSON {\"role\": \"operator|admin|device\", \"name\": \"…\", \"device\": \"…\"}")
        }
        guard let role = TokenRole(rawValue: t.role) else {
            throw APIError(.badRequest, "bad_role", "role must be device, operator or admin", path: "role")
        }
        let (token, record) = try await issueToken(role: role, name: t.name, device: t.device)
        try await audit(p, action: "token add", device: t.device, request: request, outcome: "ok", detail: "id=\(record.id) role=\(role.rawValue) name=\(t.name)")
        return try jsonResponse(TokenCreated(id: record.id, role: role.rawValue, name: t.name, device: t.device, token: token), status: .created)
    }

    /// Creates a token; the caller shows it once.
    public func issueToken(role: TokenRole, name: String, device: String?) async throws -> (String, TokenRecord) {
        guard !name.isEmpty, name.count <= 64 else { throw APIError(.badRequest, "bad_name", "name must be 1–64 characters", path: "name") }
        switch (role, device) {
        case (.device, nil): throw APIError(.badRequest, "bad_device", "device tokens need a device", path: "device")
        case (.device, let d?): try await requireDevice(d)
        case (_, nil): break
        case (_, .some): throw APIError(.badRequest, "bad_device", "only device tokens belong to a device", path: "device")
        }
        let token = BearerToken.generate()
        let record = try await store.addToken(hash: BearerToken.hash(token), role: role, deviceID: device, name: name, nowMs: clock())
        return (token, record)
    }

    public func revokeToken(_ request: Request, id: Int64) async throws -> Response {
        let p = try await authorize(request, roles: [.admin], action: "manage tokens", device: nil)
        guard try await store.revokeToken(id: id, nowMs: clock()) else {
            throw APIError(.notFound, "unknown_token", "no active token \(id)")
        }
        try await audit(p, action: "token revoke", device: nil, request: request, outcome: "ok", detail: "id=\(id)")
        return try jsonResponse(["revoked": id])
    }

    // MARK: Prometheus

    /// `GET /metrics`: Prometheus text format. Operator or admin token (Prometheus' `authorization`
    /// setting); not audited, since it holds nothing about any device or person and is scraped often.
    public func prometheusMetrics(_ request: Request) async throws -> Response {
        let principal = try await authenticate(request)
        guard principal.token.role == .operator_ || principal.token.role == .admin else {
            throw APIError(.forbidden, "forbidden", "metrics need an operator or admin token")
        }
        let now = clock()
        await metrics.refreshFleet(store: store, nowMs: now, cutoffMs: policy.cutoffMs(.fleet, nowMs: now), minReports: configuration.fleetMinReports)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }

    // MARK: Fleet

    /// `GET /v1/fleet?metric=M&bucket=300|3600&from=&to=&q=0.5,0.99`: per cohort, the fleet's figures over
    /// the range from the aggregates merged at ingest (a few rows, whatever the fleet's size), with
    /// percentiles from the merged sketch. A cohort fewer than `fleet.min_reports` reports contributed to
    /// is withheld: a fleet figure must not describe one household.
    public func fleetFigures(_ request: Request) async throws -> Response {
        _ = try await authorize(request, roles: [.operator_, .admin], action: "read fleet aggregates", device: nil)
        guard let metric = request.uri.queryParameters.get("metric"), let d = MetricCatalog.descriptor(named: metric) else {
            throw APIError(.badRequest, "unknown_metric", "metric is required and must be in docs/metrics.md", path: "metric")
        }
        let bucket = Int(request.uri.queryParameters.get("bucket") ?? "300") ?? -1
        guard FleetAggregator.bucketSizesSeconds.contains(bucket) else {
            throw APIError(.badRequest, "bad_parameter", "bucket must be one of \(FleetAggregator.bucketSizesSeconds.map(String.init).joined(separator: ", ")) (seconds)", path: "bucket")
        }
        let now = clock()
        let from = try int64Parameter(request, "from", default: now - 3_600_000)
        let to = try int64Parameter(request, "to", default: now + 1)
        guard from < to else { throw APIError(.badRequest, "bad_range", "from must be before to", path: "from") }
        var quantiles: [Double] = [0.5, 0.9, 0.99]
        if let q = request.uri.queryParameters.get("q") {
            quantiles = try q.split(separator: ",").map { part in
                guard let v = Double(part), v >= 0, v <= 1 else { throw APIError(.badRequest, "bad_parameter", "q is a list of quantiles in [0, 1]", path: "q") }
                return v
            }
        }
        let cells = try await store.fleet(metric: metric, bucketSeconds: bucket, fromMs: from, toMs: to, cutoffMs: policy.cutoffMs(.fleet, nowMs: now))
        var byCohort: [String: FleetCell] = [:]
        for c in cells {
            if var m = byCohort[c.key.cohort] { m.merge(c); byCohort[c.key.cohort] = m } else { byCohort[c.key.cohort] = c }
        }
        var answer = FleetAnswer(metric: metric, unit: d.unit, bucketSeconds: bucket, fromMs: from, toMs: to,
                                 minReports: configuration.fleetMinReports, cohorts: [], withheldCohorts: 0)
        for (cohort, c) in byCohort.sorted(by: { $0.key < $1.key }) {
            guard c.reports >= configuration.fleetMinReports else { answer.withheldCohorts += 1; continue }
            var q: [String: Double] = [:]
            for v in quantiles { q[String(v)] = c.sketch?.quantile(v) }
            answer.cohorts.append(.init(cohort: cohort, reports: c.reports, count: c.count, sum: c.sum, min: c.min, max: c.max,
                                        mean: c.count > 0 ? c.sum / Double(c.count) : 0, quantiles: q))
        }
        return try jsonResponse(answer)
    }

    struct FleetAnswer: Encodable {
        struct Cohort: Encodable {
            var cohort: String
            var reports: Int
            var count: Int
            var sum: Double
            var min: Double
            var max: Double
            var mean: Double
            var quantiles: [String: Double]
        }
        var metric: String
        var unit: String
        var bucketSeconds: Int
        var fromMs: Int64
        var toMs: Int64
        var minReports: Int
        var cohorts: [Cohort]
        var withheldCohorts: Int
        enum CodingKeys: String, CodingKey {
            case metric, unit, cohorts
            case bucketSeconds = "bucket_seconds", fromMs = "from_ms", toMs = "to_ms", minReports = "min_reports", withheldCohorts = "withheld_cohorts"
        }
    }

    // MARK: Remote settings (check-in)

    /// `PUT /v1/devices/{id}/config`: the settings the device should run; validated with the agent's
    /// rules (against the agent's defaults for what is absent), stored with a new version, audited. The
    /// device picks them up from its next acknowledgement.
    public func putSettings(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "change device settings", device: device)
        try await requireDevice(device)
        var body = try await request.body.collect(upTo: 16 * 1024)
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        let settings: AgentSettings
        do { settings = try JSONDecoder().decode(AgentSettings.self, from: Data(bytes)) } catch {
            throw APIError(.badRequest, "malformed_settings", "settings are not {\"sampling\": {...}, \"samplers\": {...}}: \(Self.describe(error))")
        }
        let doc = try await changeSettings(settings, device: device)
        try await audit(p, action: "change device settings", device: device, request: request, outcome: "ok", detail: "version=\(doc.version)")
        return try jsonResponse(doc)
    }

    /// Validates and stores new remote settings for `device` (the HTTP API and the CLI both come here; each
    /// audits with its own actor). The collector does not know the device's local file, so absent
    /// intervals are checked against the shipped defaults (10 s, 60 s); the agent checks again against its own.
    public func changeSettings(_ settings: AgentSettings, device: String) async throws -> AgentSettingsDocument {
        if let v = settings.violation(localInterval: 10, localWindow: 60) {
            throw APIError(.unprocessableContent, "invalid_settings", v.message, path: v.path)
        }
        let version = try await store.setSettings(settings, device: device, nowMs: clock())
        return AgentSettingsDocument(device: device, version: version, settings: settings)
    }

    /// `GET /v1/devices/{id}/config` for operators.
    public func getSettings(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "read device settings", device: device)
        try await requireDevice(device)
        try await audit(p, action: "read device settings", device: device, request: request, outcome: "ok")
        guard let doc = try await store.settings(device: device) else {
            throw APIError(.notFound, "no_settings", "no remote settings were set for \(device); it runs its local configuration")
        }
        return try jsonResponse(doc)
    }

    /// `GET /v1/config` for the device itself: its desired settings.
    public func deviceSettings(_ request: Request) async throws -> Response {
        let (_, device) = try await authenticateDevice(request)
        guard let doc = try await store.settings(device: device) else {
            throw APIError(.notFound, "no_settings", "no remote settings were set for this device")
        }
        return try jsonResponse(doc)
    }

    public func auditTrail(_ request: Request) async throws -> Response {
        let p = try await authorize(request, roles: [.admin], action: "read audit trail", device: nil)
        try await audit(p, action: "read audit trail", device: nil, request: request, outcome: "ok")
        let device = request.uri.queryParameters.get("device")
        let entries = try await store.audit(device: device, sinceMs: policy.cutoffMs(.audit, nowMs: clock()), limit: 10_000)
        return try jsonResponse(["entries": entries])
    }
}

/// All data held for one device.
public struct DeviceExport: Codable, Sendable {
    public struct ClassData: Codable, Sendable {
        public var retentionDays: Int
        public var windows: [StoredWindow]
        enum CodingKeys: String, CodingKey {
            case windows
            case retentionDays = "retention_days"
        }
    }
    public struct AuditData: Codable, Sendable {
        public var retentionDays: Int
        public var entries: [AuditEntry]
        enum CodingKeys: String, CodingKey {
            case entries
            case retentionDays = "retention_days"
        }
    }
    public var device: String
    public var exportedAtMs: Int64
    public var classes: [String: ClassData]
    public var audit: AuditData

    enum CodingKeys: String, CodingKey {
        case device, classes, audit
        case exportedAtMs = "exported_at_ms"
    }

    public static func csv(_ windows: [StoredWindow]) -> String {
        var out = "metric,unit,labels,window_start_ms,window_end_ms,count,min,max,mean,last,sum\n"
        for w in windows.sorted(by: { ($0.windowStartMs, canonicalLabelsJSON($0.labels)) < ($1.windowStartMs, canonicalLabelsJSON($1.labels)) }) {
            let labels = "\"" + canonicalLabelsJSON(w.labels).replacingOccurrences(of: "\"", with: "\"\"") + "\""
            out += "\(w.metric),\(w.unit),\(labels),\(w.windowStartMs),\(w.windowEndMs),\(w.count),\(w.min),\(w.max),\(w.mean),\(w.last),\(w.sum)\n"
        }
        return out
    }
}
