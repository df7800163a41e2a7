import Logging
import ServiceLifecycle

/// Sends queued reports to the collector, oldest first. Only a 2xx answer counts as delivered; anything
/// else is retried with exponential backoff (1 s doubling to 60 s). A 4xx other than 401 (the device may
/// not be registered yet), 408 and 429 means the collector will never accept that report: it is dropped
/// with an error log, so one bad report cannot block the queue. On graceful shutdown it keeps sending for
/// at most `drainTimeout` (a POST in flight can add up to the request timeout), then stops.
public struct Shipper: Service, CustomStringConvertible {
    let queue: any ReportQueue
    let url: String
    let token: String
    let timeoutSeconds: Int
    let drainTimeout: Duration
    let logger: Logger

    public init(queue: any ReportQueue, collectorURL: String, token: String, timeoutSeconds: Int,
                drainTimeout: Duration = .seconds(10), logger: Logger) {
        self.queue = queue
        self.url = collectorURL.hasSuffix("/") ? collectorURL + "v1/reports" : collectorURL + "/v1/reports"
        self.token = token
        self.timeoutSeconds = timeoutSeconds
        self.drainTimeout = drainTimeout
        self.logger = logger
    }

    /// What service-lifecycle logs for this service at debug level: never the token.
    public var description: String { "Shipper(url: \(url), token: <redacted>)" }

    enum Outcome { case delivered, rejected, retry }

    public func run() async throws {
        var backoff = Duration.seconds(1)
        var drainDeadline: ContinuousClock.Instant?
        while !Task.isCancelled {
            if drainDeadline == nil, Task.isShuttingDownGracefully { drainDeadline = .now + drainTimeout }
            if let d = drainDeadline, ContinuousClock.now >= d {
                let left = await queue.count
                if left > 0 { logger.warning("stopping with undelivered reports", metadata: ["queue.reports": "\(left)"]) }
                return
            }
            guard let report = await queue.peek(timeout: .milliseconds(500)) else {
                if drainDeadline != nil { return }  // shutting down and nothing left
                continue
            }
            switch await send(report) {
            case .delivered, .rejected:
                await queue.acknowledge(seq: report.seq)
                backoff = .seconds(1)
            case .retry:
                // Back off while draining too: a graceful shutdown cancels the sleep only to end it at the
                // drain deadline, never to retry at once (that hammered a collector that was down with
                // dozens of attempts a second during the last 10 s).
                let pause = drainDeadline.map { min(backoff, max(.zero, $0 - ContinuousClock.now)) } ?? backoff
                if drainDeadline == nil {
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                } else {
                    try? await Task.sleep(for: pause)
                }
                backoff = min(backoff * 2, .seconds(60))
            }
        }
    }

    func send(_ report: EncodedReport) async -> Outcome {
        let poster = HTTPPoster(timeoutSeconds: timeoutSeconds)
        let url = self.url
        let headers = ["Content-Type: application/json", "Content-Encoding: gzip", "Authorization: Bearer \(token)", "Expect:"]
        let body = report.gzipBody
        let result = await BlockingCall.run { poster.post(url: url, body: body, headers: headers) }
        switch result {
        case .failure(let f):
            logger.warning("report not delivered, will retry", metadata: ["report.seq": "\(report.seq)", "error": "\(f.message)"])
            return .retry
        case .success(let r) where (200..<300).contains(r.status):
            if String(decoding: r.body, as: UTF8.self).contains("\"duplicate\":true") {
                // Normal after a retry; a run of these means the sequence file was lost (docs/operations.md).
                logger.warning("collector already had this report", metadata: ["report.seq": "\(report.seq)"])
            } else {
                logger.debug("report delivered", metadata: ["report.seq": "\(report.seq)", "http.status": "\(r.status)"])
            }
            return .delivered
        case .success(let r) where (400..<500).contains(r.status) && r.status != 408 && r.status != 429 && r.status != 401:
            logger.error("collector rejected report; dropping it", metadata: [
                "report.seq": "\(report.seq)", "http.status": "\(r.status)",
                "collector.error": "\(String(decoding: r.body.prefix(512), as: UTF8.self))",
            ])
            return .rejected
        case .success(let r):
            logger.warning("collector did not accept report, will retry", metadata: [
                "report.seq": "\(report.seq)", "http.status": "\(r.status)",
                "collector.error": "\(String(decoding: r.body.prefix(512), as: UTF8.self))",
            ])
            return .retry
        }
    }
}
