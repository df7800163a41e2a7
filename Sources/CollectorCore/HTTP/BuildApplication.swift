import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// Builds the collector's HTTP application. `meetpunt-collector serve` and the tests both call this.
///
/// `onListening` receives the bound port (useful with port 0). With `tls` in the configuration it serves
/// HTTPS only; a certificate or key that cannot be read is an error here, before anything listens.
public func buildApplication(api: CollectorAPI, services: [any Service] = [],
                             onListening: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
    let router = Router()
    router.add(middleware: ErrorMiddleware(logger: api.logger))
    router.get("/healthz") { _, _ in "ok\n" }
    router.post("/v1/reports") { request, _ in try await api.ingest(request) }
    router.post("/v1/report-batches") { request, _ in try await api.ingestBatch(request) }
    router.get("/v1/config") { request, _ in try await api.deviceSettings(request) }
    router.get("/v1/fleet") { request, _ in try await api.fleetFigures(request) }
    router.get("/metrics") { request, _ in try await api.prometheusMetrics(request) }
    router.get("/v1/devices") { request, _ in try await api.listDevices(request) }
    router.put("/v1/devices/:id/config") { request, context in
        try await api.putSettings(request, device: try context.parameters.require("id"))
    }
    router.get("/v1/devices/:id/config") { request, context in
        try await api.getSettings(request, device: try context.parameters.require("id"))
    }
    router.get("/v1/devices/:id/series") { request, context in
        try await api.series(request, device: try context.parameters.require("id"))
    }
    router.get("/v1/devices/:id/export") { request, context in
        try await api.export(request, device: try context.parameters.require("id"))
    }
    router.delete("/v1/devices/:id/data") { request, context in
        try await api.erase(request, device: try context.parameters.require("id"))
    }
    router.post("/v1/tokens") { request, _ in try await api.createToken(request) }
    router.delete("/v1/tokens/:id") { request, context in
        guard let id = Int64(try context.parameters.require("id")) else {
            throw APIError(.badRequest, "bad_parameter", "token id must be an integer", path: "id")
        }
        return try await api.revokeToken(request, id: id)
    }
    router.get("/v1/audit") { request, _ in try await api.auditTrail(request) }
    router.get("/v1/session") { request, _ in try await api.deviceSession(request) }
    router.post("/v1/devices/:id/sessions") { request, context in try await api.postSession(request, device: try context.parameters.require("id")) }
    router.get("/v1/devices/:id/sessions") { request, context in try await api.listSessions(request, device: try context.parameters.require("id")) }
    router.delete("/v1/devices/:id/sessions/:sid") { request, context in
        guard let sid = Int64(try context.parameters.require("sid")) else {
            throw APIError(.badRequest, "bad_parameter", "session id must be an integer", path: "sid")
        }
        return try await api.deleteSession(request, device: try context.parameters.require("id"), id: sid)
    }

    let dashboard = Dashboard(api: api)
    router.get("/ui") { _, _ in dashboard.redirect("/ui/fleet") }
    router.get("/ui/style.css") { _, _ in dashboard.stylesheet() }
    router.get("/ui/login") { request, _ in try await dashboard.loginPage(request) }
    router.post("/ui/login") { request, _ in try await dashboard.login(request) }
    router.get("/ui/login/once") { request, _ in try await dashboard.loginOnce(request) }
    router.post("/ui/logout") { request, _ in try await dashboard.logout(request) }
    router.get("/ui/fleet") { request, _ in try await dashboard.fleetPage(request) }
    router.get("/ui/devices/:id") { request, context in try await dashboard.devicePage(request, device: try context.parameters.require("id")) }
    router.post("/ui/devices/:id/sessions") { request, context in try await dashboard.startSession(request, device: try context.parameters.require("id")) }
    router.post("/ui/devices/:id/sessions/:sid/stop") { request, context in
        try await dashboard.stopSession(request, device: try context.parameters.require("id"), id: Int64(try context.parameters.require("sid")) ?? -1)
    }
    router.get("/ui/devices/:id/export") { request, context in try await dashboard.export(request, device: try context.parameters.require("id")) }

    var server = HTTPServerBuilder.http1()
    if let files = api.configuration.tls {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChainFile).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: files.privateKeyFile, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            tls.minimumTLSVersion = .tlsv12
            server = try .tls(.http1(), tlsConfiguration: tls)
        } catch {
            throw CollectorError(.configuration, "listen.tls: cannot load \(files.certificateChainFile) / \(files.privateKeyFile): \(error)")
        }
    }
    return Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname(api.configuration.host, port: api.configuration.port), serverName: "meetpunt-collector"),
        services: services,
        onServerRunning: { channel in await onListening(channel.localAddress?.port ?? api.configuration.port) },
        logger: api.logger)
}

/// Turns ``APIError`` into its JSON answer and any other error into a 500 that names no internals;
/// the server stays up whatever a request does.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            if e.status.code >= 500 || e.status == .forbidden {
                logger.notice("request refused", metadata: ["http.path": "\(request.uri.path)", "http.status": "\(e.status.code)", "error.code": "\(e.code)"])
            }
            return e.response
        } catch let e as HTTPResponseError {
            throw e
        } catch {
            logger.error("request failed", metadata: ["http.path": "\(request.uri.path)", "error": "\(error)"])
            return APIError(.internalServerError, "internal", "the collector could not complete the request; see its log").response
        }
    }
}

/// Deletes expired data every `interval` and logs the counts per class.
public struct PurgeService: Service {
    let api: CollectorAPI
    let interval: Duration

    public init(api: CollectorAPI, interval: Duration) {
        self.api = api
        self.interval = interval
    }

    /// Ends on graceful shutdown and on cancellation (a failed start cancels the group: a loop that only
    /// watched for graceful shutdown would spin, its sleep returning at once). A failing purge is retried
    /// after `interval`, so its error is logged at most once per interval.
    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if await purgeOnce().isEmpty, Task.isCancelled { return }
            do {
                try await cancelWhenGracefulShutdown { [interval] in try await Task.sleep(for: interval) }
            } catch {
                return  // cancelled or shutting down
            }
        }
    }

    @discardableResult
    public func purgeOnce(dryRun: Bool = false) async -> [String: Int] {
        do {
            let counts = try await api.store.purge(cutoffs: api.policy.cutoffs(nowMs: api.clock()), dryRun: dryRun)
            var metadata: Logger.Metadata = ["purge.dry_run": "\(dryRun)"]
            for (k, v) in counts { metadata["purge.deleted.\(k)"] = "\(v)" }
            api.logger.info("retention purge", metadata: metadata)
            if !dryRun { api.metrics.purged(ok: true, atMs: api.clock()) }
            return counts
        } catch {
            // Cancelled mid-purge (GRDB interrupts the statement): not a failure worth a line.
            if Task.isCancelled || error is CancellationError { return [:] }
            api.logger.error("retention purge failed; next attempt after the purge interval", metadata: ["error": "\(error)"])
            api.metrics.purged(ok: false, atMs: api.clock())
            return [:]
        }
    }
}
