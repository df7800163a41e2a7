import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import TelemetryModel

/// Troubleshooting sessions: an operator asks one device for high-resolution data for a while. The
/// collector keeps the session in the database; the agent learns of it by long-polling `GET v1/session`
/// (so it arrives within a second of being started), switches to the session's profile, tags its reports
/// with the session, and reverts at the end time by its own clock even when the collector is unreachable.
/// Start, stop and the end of an expired session are audited.
extension CollectorAPI {
    /// Shortest session: long enough for one window of the profile and its delivery.
    static let minimumSessionSeconds = 10

    /// Starts a session (the HTTP API, the dashboard and the CLI all come here); audits it as `actor`.
    public func startSession(device: String, actor: String, reason rawReason: String, seconds: Int?) async throws -> TroubleshootingSession {
        let reason = Self.sanitizeReason(rawReason, guard: validator.identifierGuard).trimmingCharacters(in: .whitespaces)
        guard !reason.isEmpty else {
            throw APIError(.unprocessableContent, "missing_reason", "a troubleshooting session needs a reason or ticket reference", path: "reason")
        }
        let settings = configuration.sessions
        let duration = seconds ?? settings.defaultMinutes * 60
        guard duration >= Self.minimumSessionSeconds, duration <= settings.maxMinutes * 60 else {
            throw APIError(.unprocessableContent, "bad_duration",
                           "a session lasts \(Self.minimumSessionSeconds) s to \(settings.maxMinutes) min (sessions.max_minutes)", path: "minutes")
        }
        guard try await store.deviceExists(device) else { throw APIError(.notFound, "unknown_device", "no device \(device)") }
        let now = clock()
        guard let session = try await store.startSession(device: device, actor: actor, reason: reason, startMs: now, endMs: now + Int64(duration) * 1000,
                                                         intervalSeconds: settings.intervalSeconds, windowSeconds: settings.windowSeconds) else {
            throw APIError(.conflict, "session_running", "a troubleshooting session is already running for \(device); stop it first")
        }
        try await store.appendAudit(AuditEntry(atMs: now, actor: actor, action: "start troubleshooting session", deviceID: device, reason: reason,
                                               outcome: "ok", detail: "id=\(session.id) seconds=\(duration) profile=\(session.intervalSeconds)s/\(session.windowSeconds)s"))
        logger.notice("troubleshooting session started", metadata: ["session.id": "\(session.id)", "device": "\(device)", "session.seconds": "\(duration)"])
        return session
    }

    /// Stops the running session `id` of `device`; audits it as `actor`.
    public func stopSession(device: String, id: Int64, actor: String, reason: String?) async throws {
        guard try await store.stopSession(device: device, id: id, actor: actor, nowMs: clock()) else {
            throw APIError(.notFound, "no_running_session", "session \(id) of \(device) is not running")
        }
        try await store.appendAudit(AuditEntry(atMs: clock(), actor: actor, action: "stop troubleshooting session", deviceID: device,
                                               reason: reason.map { Self.sanitizeReason($0, guard: validator.identifierGuard) }, outcome: "ok", detail: "id=\(id)"))
        logger.notice("troubleshooting session stopped", metadata: ["session.id": "\(id)", "device": "\(device)"])
    }

    struct SessionRequest: Decodable {
        let reason: String
        let minutes: Int?
        let seconds: Int?
    }

    /// `POST /v1/devices/{id}/sessions` `{"reason": "…", "minutes": 30}` (or `"seconds"`).
    public func postSession(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "start troubleshooting session", device: device)
        var body = try await request.body.collect(upTo: 16 * 1024)
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        let r: SessionRequest
        do { r = try JSONDecoder().decode(SessionRequest.self, from: Data(bytes)) } catch {
            throw APIError(.badRequest, "malformed_request", "expected JSON {\"reason\": \"…\", \"minutes\": N}: \(Self.describe(error))")
        }
        if r.minutes != nil, r.seconds != nil {
            throw APIError(.unprocessableContent, "bad_duration", "give minutes or seconds, not both", path: "seconds")
        }
        if let m = r.minutes, m < 1 || m > 100_000 { throw APIError(.unprocessableContent, "bad_duration", "minutes must be 1 or more", path: "minutes") }
        if let s = r.seconds, s < 1 || s > 10_000_000 { throw APIError(.unprocessableContent, "bad_duration", "seconds must be 1 or more", path: "seconds") }
        let session = try await startSession(device: device, actor: p.actor, reason: r.reason, seconds: r.seconds ?? r.minutes.map { $0 * 60 })
        return try jsonResponse(SessionAnswer(session, nowMs: clock()), status: .created)
    }

    /// `GET /v1/devices/{id}/sessions`: the device's sessions, newest first (audited read).
    public func listSessions(_ request: Request, device: String) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "list troubleshooting sessions", device: device)
        try await requireDevice(device)
        try await audit(p, action: "list troubleshooting sessions", device: device, request: request, outcome: "ok")
        let now = clock()
        return try jsonResponse(["sessions": try await store.sessions(device: device, limit: 100).map { SessionAnswer($0, nowMs: now) }])
    }

    /// `DELETE /v1/devices/{id}/sessions/{sid}`: stops a running session.
    public func deleteSession(_ request: Request, device: String, id: Int64) async throws -> Response {
        let p = try await authorize(request, roles: [.operator_, .admin], action: "stop troubleshooting session", device: device)
        try await requireDevice(device)
        let reason = request.headers[HTTPField.Name("X-Meetpunt-Reason")!]
        try await stopSession(device: device, id: id, actor: p.actor, reason: reason)
        return try jsonResponse(["stopped": id])
    }

    /// `GET /v1/session?wait=S&known=ID` for the device itself: the session it should run now, answered
    /// within a second of that differing from `known` (0: none), or after `wait` seconds (at most 30). The
    /// wait reads the database once a second, so any collector process behind a load balancer answers alike.
    /// A collector that is stopping (SIGTERM) answers at once with what it knows: the server waits for
    /// the requests in flight, and every agent holds one of these, so a restart waited out the longest
    /// poll (up to 30 s) before. The agent asks again, of this process after its restart or of another.
    public func deviceSession(_ request: Request) async throws -> Response {
        let (_, device) = try await authenticateDevice(request)
        let q = request.uri.queryParameters
        guard let wait = Int(q.get("wait") ?? "0"), (0...30).contains(wait) else {
            throw APIError(.badRequest, "bad_parameter", "wait is 0 to 30 seconds", path: "wait")
        }
        guard let known = Int64(q.get("known") ?? "0"), known >= 0 else {
            throw APIError(.badRequest, "bad_parameter", "known is the session id the device runs, 0 for none", path: "known")
        }
        let deadline = ContinuousClock.now + .seconds(wait)
        var current = try await store.runningSession(device: device, nowMs: clock())
        while (current?.id ?? 0) == known, ContinuousClock.now < deadline, !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            } catch is CancellationError where Task.isShuttingDownGracefully {
                break
            }
            current = try await store.runningSession(device: device, nowMs: clock())
        }
        return try jsonResponse(DeviceSessionAnswer(session: current.map { SessionAnswer($0, nowMs: clock()) }))
    }

    struct DeviceSessionAnswer: Encodable {
        let session: SessionAnswer?
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(session, forKey: .session)  // null when none, so the agent knows it must revert
        }
        enum CodingKeys: String, CodingKey { case session }
    }

    /// A session as the API shows it: with the time left, so an agent with a wrong clock still ends it on time.
    struct SessionAnswer: Encodable {
        let session: TroubleshootingSession
        let remainingMs: Int64
        init(_ s: TroubleshootingSession, nowMs: Int64) {
            session = s
            remainingMs = max(0, s.endMs - nowMs)
        }
        func encode(to encoder: any Encoder) throws {
            try session.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(remainingMs, forKey: .remainingMs)
        }
        enum Keys: String, CodingKey { case remainingMs = "remaining_ms" }
    }
}

/// Records the end of sessions that ran out (the audit trail's "expired" entries); one collector process
/// takes each, whichever it is.
public struct SessionExpiryService: Service {
    let api: CollectorAPI
    let interval: Duration

    public init(api: CollectorAPI, interval: Duration = .seconds(5)) {
        self.api = api
        self.interval = interval
    }

    public func run() async throws {
        var pause = interval
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let wait = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            if Task.isCancelled { break }
            pause = await recordOnce() ? interval : min(pause * 2, .seconds(300))
        }
    }

    @discardableResult
    public func recordOnce() async -> Bool {
        do {
            for s in try await api.store.takeExpiredSessions(nowMs: api.clock()) {
                try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: "collector", action: "troubleshooting session ended",
                                                           deviceID: s.deviceID, reason: s.reason, outcome: "ok", detail: "id=\(s.id) expired"))
                api.logger.notice("troubleshooting session ended", metadata: ["session.id": "\(s.id)", "device": "\(s.deviceID)"])
            }
            return true
        } catch {
            api.logger.error("ended troubleshooting sessions not recorded, will retry", metadata: ["error": "\(error)"])
            return false
        }
    }
}
