import AgentConfig
import FoundationEssentials
import GzipCodec
import Logging
import ServiceLifecycle
import TelemetryModel

/// Sends spooled reports to the collector, oldest first, several per request
/// (`POST v1/report-batches`), and removes each from the spool only on the collector's acknowledgement
/// for its `seq`.
///
/// - Acknowledgements are decoded (``BatchAcknowledgement``): `stored` and `duplicate` are delivered,
///   `rejected` will never be accepted as sent and is dropped with its reason logged, `retry` and reports
///   missing from the answer stay spooled.
/// - Failures back off exponentially with full jitter (a pause drawn uniformly from zero to
///   `initial × 2^attempt`, capped), so a fleet that lost its collector does not return in lockstep.
///   429 and 503 wait at least their `Retry-After`.
/// - 413, or a 400 for a batch of several, halves the batch; a single report the collector cannot take
///   (413, 400) is dropped with an error log so it cannot block the spool.
/// - On graceful shutdown it keeps sending for at most `drainTimeout`; what is left stays spooled for the
///   next start.
public struct Shipper: Service, CustomStringConvertible {
    let spool: DiskSpool
    let transport: any ReportTransport
    let shipping: AgentConfiguration.Shipping
    let drainTimeout: Duration
    let wallClock: @Sendable () -> Int64?
    let onConfigVersion: @Sendable (UInt64) async -> Void
    let logger: Logger

    /// `wallClock` gives "now" in Unix ms once the wall clock is plausible (for the spool's age bound), nil
    /// before. `onConfigVersion` receives the configuration version each acknowledgement carries.
    public init(spool: DiskSpool, transport: any ReportTransport, shipping: AgentConfiguration.Shipping,
                drainTimeout: Duration = .seconds(10), wallClock: @escaping @Sendable () -> Int64? = { nil },
                onConfigVersion: @escaping @Sendable (UInt64) async -> Void = { _ in }, logger: Logger) {
        self.spool = spool
        self.transport = transport
        self.shipping = shipping
        self.drainTimeout = drainTimeout
        self.wallClock = wallClock
        self.onConfigVersion = onConfigVersion
        self.logger = logger
    }

    /// What service-lifecycle logs for this service: the transport's own description, which hides the token.
    public var description: String { "Shipper(\(transport))" }

    static let batchPath = "v1/report-batches"

    /// What one request achieved.
    enum Outcome: Equatable {
        /// Some reports were acknowledged (the rest stay for the next request).
        case progress
        /// Nothing acknowledged; wait at least this long (Retry-After) or back off.
        case retry(atLeast: Duration?)
        /// Send fewer reports per request.
        case shrink
    }

    public func run() async throws {
        var attempt = 0
        var batchLimit = shipping.maxReportsPerRequest
        var drainDeadline: ContinuousClock.Instant?
        while !Task.isCancelled {
            if drainDeadline == nil, Task.isShuttingDownGracefully { drainDeadline = .now + drainTimeout }
            if let d = drainDeadline, ContinuousClock.now >= d {
                let left = spool.count
                if left > 0 { logger.notice("stopping with reports still spooled; they are sent after the next start", metadata: ["spool.reports": "\(left)"]) }
                return
            }
            let (spool, limit, maxBytes, now) = (self.spool, batchLimit, shipping.maxRequestBytes, wallClock())
            let batch = await BlockingCall.run { spool.oldest(maxReports: limit, maxBytes: maxBytes, nowMs: now) }
            guard !batch.isEmpty else {
                if drainDeadline != nil { return }  // shutting down and nothing left
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) }
                continue
            }
            switch await send(batch) {
            case .progress:
                attempt = 0
                batchLimit = min(shipping.maxReportsPerRequest, batchLimit * 2)
            case .shrink:
                batchLimit = max(1, batch.count / 2)
            case .retry(let atLeast):
                let pause = max(atLeast ?? .zero, Self.backoff(attempt: attempt, initial: .milliseconds(shipping.backoffInitialMilliseconds),
                                                                 cap: .seconds(shipping.backoffMaxSeconds)))
                attempt += 1
                // Back off while draining too: a graceful shutdown ends the pause only at the drain deadline.
                if let d = drainDeadline {
                    try? await Task.sleep(for: min(pause, max(.zero, d - ContinuousClock.now)))
                } else {
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                }
            }
        }
    }

    /// Full jitter: uniform in [0, min(cap, initial × 2^attempt)].
    static func backoff(attempt: Int, initial: Duration, cap: Duration) -> Duration {
        let ceiling = min(cap, initial * (1 << min(attempt, 30)))
        let ms = ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000
        return .milliseconds(Int64.random(in: 0...max(1, ms)))
    }

    /// Sends one batch and applies the answer to the spool.
    func send(_ batch: [DiskSpool.Stored]) async -> Outcome {
        let first = batch.first!.seq, last = batch.last!.seq
        let range: Logger.Metadata = ["report.first_seq": "\(first)", "report.last_seq": "\(last)", "batch.reports": "\(batch.count)"]
        let (body, unreadable) = Self.batchBody(batch)
        if !unreadable.isEmpty {
            // A record that does not inflate cannot be sent as JSON: it is dropped (counted in
            // agent.rejected_reports) rather than block the spool; the rest go on.
            logger.error("spooled report unreadable; dropping it", metadata: ["report.seqs": "\(unreadable.sorted())"])
            await BlockingCall.run { [spool] in spool.acknowledge(unreadable, rejected: unreadable.count) }
            return .progress
        }
        guard let body else {
            logger.error("batch could not be compressed, will retry", metadata: range)
            return .retry(atLeast: nil)
        }
        switch await transport.post(path: Self.batchPath, gzipBody: body) {
        case .failure(let e):
            logger.warning("reports not delivered, will retry", metadata: range.merging(["error": "\(e.message)"]) { a, _ in a })
            return .retry(atLeast: nil)
        case .success(let r) where (200..<300).contains(r.status):
            let ack: BatchAcknowledgement
            do { ack = try JSONDecoder().decode(BatchAcknowledgement.self, from: Data(r.body)) } catch {
                logger.error("collector's acknowledgement could not be read, will retry", metadata: range.merging(["error": "\(error)"]) { a, _ in a })
                return .retry(atLeast: nil)
            }
            let sent = Set(batch.map(\.seq))
            var done: Set<UInt64> = []
            var duplicates = 0, rejected = 0
            for result in ack.results where sent.contains(result.seq) {
                switch result.status {
                case .stored: done.insert(result.seq)
                case .duplicate:
                    duplicates += 1
                    done.insert(result.seq)
                case .rejected:
                    done.insert(result.seq)
                    rejected += 1
                    logger.error("collector rejected report; dropping it", metadata: [
                        "report.seq": "\(result.seq)", "collector.error": "\(result.error?.code ?? "?"): \(result.error?.message ?? "")",
                    ])
                default: break
                }
            }
            if !done.isEmpty { await BlockingCall.run { [spool, done, rejected] in spool.acknowledge(done, rejected: rejected) } }
            if duplicates > 0 {
                // Normal after a lost answer; every report a duplicate, run after run, means the spool was lost.
                logger.info("collector already had reports (sent again after a lost answer)", metadata: ["batch.duplicates": "\(duplicates)"])
            }
            logger.debug("reports delivered", metadata: range.merging(["batch.acknowledged": "\(done.count)"]) { a, _ in a })
            if let v = ack.configVersion { await onConfigVersion(v) }
            return done.isEmpty ? .retry(atLeast: nil) : .progress
        case .success(let r) where r.status == 413 || r.status == 400:
            if batch.count > 1 {
                logger.notice("collector refused the batch; sending fewer reports per request", metadata: range.merging(["http.status": "\(r.status)"]) { a, _ in a })
                return .shrink
            }
            logger.error("collector cannot take this report; dropping it", metadata: range.merging([
                "http.status": "\(r.status)", "collector.error": "\(Self.errorText(r.body))",
            ]) { a, _ in a })
            await BlockingCall.run { [spool] in spool.acknowledge([first], rejected: 1) }
            return .progress
        case .success(let r):
            let wait = (r.status == 429 || r.status == 503) ? r.retryAfterSeconds.map { Duration.seconds(min($0, 3600)) } : nil
            logger.warning("collector did not accept reports, will retry", metadata: range.merging([
                "http.status": "\(r.status)", "collector.error": "\(Self.errorText(r.body))",
                "retry_after.seconds": "\(r.retryAfterSeconds.map(String.init) ?? "-")",
            ]) { a, _ in a })
            return .retry(atLeast: wait)
        }
    }

    /// `{"reports":[…]}` gzip-compressed, from the spooled reports' own gzip bodies, and the seqs whose
    /// body does not inflate (then no body: the caller drops those first).
    static func batchBody(_ batch: [DiskSpool.Stored]) -> (body: [UInt8]?, unreadable: Set<UInt64>) {
        var json: [UInt8] = Array(#"{"reports":["#.utf8)
        var unreadable: Set<UInt64> = []
        for r in batch {
            guard let inflated = try? Gzip.decompress(r.gzipBody, limit: 8 << 20) else {
                unreadable.insert(r.seq)
                continue
            }
            if json.count > 12 { json.append(UInt8(ascii: ",")) }
            json += inflated
        }
        guard unreadable.isEmpty else { return (nil, unreadable) }
        json += Array("]}".utf8)
        return (try? Gzip.compress(json), [])
    }

    static func errorText(_ body: [UInt8]) -> String { String(decoding: body.prefix(512), as: UTF8.self) }
}
