import ArgumentParser
import AsyncHTTPClient
import CollectorCore
import Foundation
import GzipCodec
import NIOCore
import NIOHTTP1
import TelemetryModel

/// `meetpunt-collector loadtest`: a simulated fleet against a running collector, with throughput, request
/// latency and storage per report; or, with `--generate-only`, the same fleet's reports as InfluxDB line
/// protocol for comparison with another time-series store (`scripts/bench/storage-load.sh`).
struct LoadTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Load a running collector with a simulated fleet; print reports/s, request latency and database bytes per report.",
        discussion: """
            Registers --devices devices (<prefix>-00000, …) and a device token for each directly in the database of --config, \
            which must be the configuration of the collector serving --url. Each device has its own seq counter and window \
            clock: 5-minute windows from 24 hours ago onwards, so every window has ended (a device that used up the day starts \
            again at its oldest window, with the next seq). Every request is one gzip batch of --reports-per-request consecutive \
            windows of one device (POST /v1/report-batches); --concurrency requests are in flight; no request starts after \
            --seconds. Reports carry --series series of the catalog: link counters and rates for 4–6 interfaces, LAN clients \
            by pseudonym, Wi-Fi radios, stations and neighbours, router health and the agent's own series, with sketches. \
            At the end the collector's report count for the simulated devices must equal the acknowledged stored reports, \
            and their tokens are revoked. Exits 1 if any report was rejected, not acknowledged, acknowledged twice or missing.
            """)

    @OptionGroup var options: CollectorOptions
    @Option(help: "The collector's base URL.") var url = "http://127.0.0.1:8080"
    @Option(help: "Simulated devices.") var devices = 200
    @Option(help: "Send for this many seconds (requests in flight then finish).") var seconds = 60
    @Option(help: "Requests in flight at once.") var concurrency = 8
    @Option(help: "Reports per request: consecutive windows of one device.") var reportsPerRequest = 10
    @Option(help: "Series per report, 60–100.") var series = 92
    @Option(help: "Seed of the simulated fleet: the same seed gives the same devices, clients and values.") var seed: UInt64 = 1
    @Flag(help: "Start every device's windows ten minutes ago instead of a day ago, so each device's first reports are its newest (the dashboard's render benchmark: every device reporting).")
    var recent = false
    @Option(help: "Device ids are <prefix>-00000, …; default lt-<current time in base 36>, new on every run.") var devicePrefix: String?
    @Option(help: "Also write every report sent as InfluxDB line protocol to this file (a line per series; tags: device and the labels).")
    var influxOut: String?
    @Option(help: "Write each request's answer time (seconds from the start) and latency (ms), a line each, to this file: where the slow ones fall.")
    var latencyLog: String?
    @Option(help: "Send nothing, register nothing: generate this many reports (round robin over the devices, --reports-per-request at a time) into --influx-out.")
    var generateOnly: Int?
    @Option(help: "Build this many reports' requests before the clock starts (each sender its share, both cores at once) and send only those: the timed part then measures the collector without the generator's CPU. The run ends at --seconds or when all are sent.")
    var prebuilt: Int?
    @Option(help: "With --generate-only: train a zstd dictionary for stored payloads on the generated reports (each report's series of each data class encoded as the collector stores them) and write it to this file (scripts/storage/make-dictionary.sh).")
    var trainDictionary: String?
    @Option(help: "Send nothing, register nothing: build this many reports' requests and time each CPU stage of ingesting them in this process (inflate, read, check, encode rows, fleet aggregates; no HTTP, no database): microseconds per report, the best of --rounds.")
    var cpuStages: Int?
    @Option(help: "With --cpu-stages: rounds over the same requests; each stage's best round is printed.") var rounds = 5

    func validate() throws {
        guard (1...100_000).contains(devices) else { throw ValidationError("--devices must be 1–100000") }
        guard (1...86_400).contains(seconds) else { throw ValidationError("--seconds must be 1–86400") }
        guard (1...1024).contains(concurrency) else { throw ValidationError("--concurrency must be 1–1024") }
        guard (1...10_000).contains(reportsPerRequest) else { throw ValidationError("--reports-per-request must be 1–10000") }
        guard (60...100).contains(series) else { throw ValidationError("--series must be 60–100") }
        if let generateOnly {
            guard generateOnly >= 1 else { throw ValidationError("--generate-only must be at least 1") }
            guard influxOut != nil || trainDictionary != nil else { throw ValidationError("--generate-only writes to --influx-out FILE or --train-dictionary FILE: add one") }
        }
        if let cpuStages {
            guard cpuStages >= 1 else { throw ValidationError("--cpu-stages must be at least 1") }
            guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be 1–100") }
            guard prebuilt == nil, generateOnly == nil, influxOut == nil else { throw ValidationError("--cpu-stages sends nothing: it does not go with --prebuilt, --generate-only or --influx-out") }
        }
        if let prebuilt {
            guard prebuilt >= 1 else { throw ValidationError("--prebuilt must be at least 1") }
            guard influxOut == nil, generateOnly == nil else { throw ValidationError("--prebuilt sends prebuilt requests: it does not go with --influx-out or --generate-only") }
        }
        if let devicePrefix, devicePrefix.isEmpty || devicePrefix.utf8.count > 57 {
            throw ValidationError("--device-prefix must be 1–57 characters")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw ValidationError("--url must start with http:// or https://") }
    }

    func run() async throws {
        let clock = ContinuousClock()
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        let windows = LoadWindows(nowMs: nowMs, recent: recent)
        let prefix = devicePrefix ?? "lt-" + String(nowMs / 1000, radix: 36)
        let width = Swift.max(5, String(devices - 1).count)
        var fleet: [LoadDevice] = []
        fleet.reserveCapacity(devices)
        let validator = ReportValidator()
        for i in 0..<devices {
            let digits = String(i)
            let id = prefix + "-" + String(repeating: "0", count: width - digits.count) + digits
            if let v = validator.validateDeviceID(id) { throw ValidationError("device id \(id): \(v.message)") }
            let device = LoadDevice(id: id, index: i, seed: seed, seriesCount: series, windows: windows)
            // The generator checks itself first: a report the collector would refuse is a bug here, not load.
            var probe = device
            let first = probe.nextReport(windows: windows).report
            guard first.series.count == series else {
                throw LoadFailure("the generator made \(first.series.count) series for \(id), not \(series)")
            }
            if let v = validator.validate(first, nowMs: nowMs) {
                throw LoadFailure("the generator made a report the collector would reject (\(id)): \(v)")
            }
            fleet.append(device)
        }
        let sink = try influxOut.map { try LoadLineSink(path: $0) }

        if let generateOnly, let trainDictionary {
            try Self.train(fleet: fleet, count: generateOnly, perRequest: reportsPerRequest, windows: windows, to: trainDictionary)
            return
        }
        if let generateOnly, let sink {
            try await Self.generate(fleet: fleet, count: generateOnly, perRequest: reportsPerRequest, windows: windows, sink: sink)
            return
        }

        if let cpuStages {
            let configuration = try CollectorOptions.orExit { () throws(CollectorError) in try CollectorConfiguration.load(path: options.config) }
            guard reportsPerRequest <= configuration.maxReportsPerBatch else {
                throw ValidationError("--reports-per-request \(reportsPerRequest) is over the collector's ingest.max_reports_per_batch (\(configuration.maxReportsPerBatch))")
            }
            let requests = (cpuStages + reportsPerRequest - 1) / reportsPerRequest
            let bodies = try Self.prepare(fleet: fleet, requests: requests, perRequest: reportsPerRequest, windows: windows).map(\.body)
            let result = try await IngestStages.measure(bodies: bodies, rounds: rounds, nowMs: nowMs, configuration: configuration)
            print("loadtest: CPU per report in each ingest stage, \(result.reports) reports (\(result.series) series) of \(fleet.count) devices "
                  + "in \(bodies.count) gzip requests, best of \(rounds) rounds, this process only (no HTTP, no database)")
            for s in result.stages {
                print(s.name.padding(toLength: 30, withPad: " ", startingAt: 0) + Self.format(s.microsecondsPerReport, 1).leftPadded(9) + " µs"
                      + Self.format(100 * s.microsecondsPerReport / result.totalMicrosecondsPerReport, 1).leftPadded(8) + " %")
            }
            print("total".padding(toLength: 30, withPad: " ", startingAt: 0) + Self.format(result.totalMicrosecondsPerReport, 1).leftPadded(9) + " µs")
            print("loadtest-cpu-stages: reports=\(result.reports) "
                  + result.stages.map { "\($0.name.prefix { $0 != " " })_us=\(Self.format($0.microsecondsPerReport, 1))" }.joined(separator: " ")
                  + " total_us=\(Self.format(result.totalMicrosecondsPerReport, 1))")
            return
        }

        // MARK: Register the fleet in the collector's database

        try await options.withAPI(logLevel: .warning, create: true) { api in
            guard reportsPerRequest <= api.configuration.maxReportsPerBatch else {
                throw ValidationError("--reports-per-request \(reportsPerRequest) is over the collector's ingest.max_reports_per_batch (\(api.configuration.maxReportsPerBatch))")
            }
            let database = try await api.store.diskUsage().location
            let ids = Set(fleet.map(\.id))
            if let taken = try await api.store.devices().first(where: { ids.contains($0.id) }) {
                throw ValidationError("device \(taken.id) is already registered in \(database) and its seq numbers would collide: choose another --device-prefix")
            }
            let registering = clock.now
            var tokenIDs: [Int64] = []
            for i in fleet.indices {
                _ = try await api.store.addDevice(fleet[i].id, nowMs: api.clock())
                let (token, record) = try await api.issueToken(role: .device, name: fleet[i].id, device: fleet[i].id)
                fleet[i].token = token
                tokenIDs.append(record.id)
            }
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token add", deviceID: nil,
                                                       reason: "loadtest", outcome: "ok", detail: "\(fleet.count) device tokens for \(prefix)-*"))
            print("loadtest: registered \(fleet.count) devices (\(fleet[0].id) … \(fleet[fleet.count - 1].id)) and their tokens in \(database) "
                  + "in \(Self.format(Self.milliseconds(clock.now - registering) / 1000, 1)) s")

            // MARK: Send

            let workers = Swift.min(concurrency, fleet.count)
            let endpoint = (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/v1/report-batches"
            let perRequest = reportsPerRequest
            let registered = fleet
            let before = try await api.store.diskUsage()
            print("loadtest: \(series) series per report, \(perRequest) reports per request, \(workers) requests in flight, "
                  + "\(seconds) s against \(endpoint)")
            let client = HTTPClient(
                eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                configuration: HTTPClient.Configuration(
                    redirectConfiguration: .disallow,
                    timeout: .init(connect: .seconds(10), read: .seconds(120)),
                    connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: workers)))
            var prepared: [[PreparedRequest]]?
            if let prebuilt {
                let building = clock.now
                let share = (prebuilt + perRequest * workers - 1) / (perRequest * workers)  // requests per sender
                prepared = try await withThrowingTaskGroup(of: (Int, [PreparedRequest]).self) { group in
                    for w in 0..<workers {
                        let mine = stride(from: w, to: registered.count, by: workers).map { registered[$0] }
                        group.addTask { (w, try LoadTest.prepare(fleet: mine, requests: share, perRequest: perRequest, windows: windows)) }
                    }
                    var all = Array(repeating: [PreparedRequest](), count: workers)
                    for try await (w, list) in group { all[w] = list }
                    return all
                }
                let count = prepared!.reduce(0) { $0 + $1.reduce(0) { $0 + $1.seqs.count } }
                print("loadtest: prebuilt \(count) reports in \(prepared!.reduce(0) { $0 + $1.count }) requests in "
                      + "\(Self.format(Self.milliseconds(clock.now - building) / 1000, 1)) s (not timed)")
            }
            let started = clock.now
            let deadline = started + .seconds(seconds)
            let total: LoadTally
            do {
                total = try await withThrowingTaskGroup(of: LoadTally.self, returning: LoadTally.self) { group in
                    for w in 0..<workers {
                        let mine = stride(from: w, to: registered.count, by: workers).map { registered[$0] }
                        let ready = prepared?[w]
                        group.addTask {
                            try await LoadTest.worker(fleet: mine, client: client, endpoint: endpoint, until: deadline,
                                                      perRequest: perRequest, windows: windows, sink: sink, prepared: ready,
                                                      buildQueue: Self.buildQueues[w % Self.buildQueues.count])
                        }
                    }
                    var merged = LoadTally()
                    for try await tally in group { merged.merge(tally) }
                    return merged
                }
            } catch {
                try? await client.shutdown()
                _ = try? await sink?.close()
                throw error
            }
            let elapsed = Self.milliseconds(clock.now - started) / 1000
            try await client.shutdown()
            if let sink {
                let (lines, fields, bytes) = try await sink.close()
                print("loadtest: wrote \(lines) lines, \(fields) values, \(bytes) bytes of line protocol to \(influxOut ?? "-")")
            }

            // MARK: What the collector holds

            let after = try await api.store.diskUsage()
            let held = try await api.store.devices().filter { ids.contains($0.id) }.reduce(0) { $0 + $1.reports }
            for id in tokenIDs { _ = try await api.store.revokeToken(id: id, nowMs: api.clock()) }
            try await api.store.appendAudit(AuditEntry(atMs: api.clock(), actor: CollectorOptions.cliActor, action: "token revoke", deviceID: nil,
                                                       reason: "loadtest", outcome: "ok", detail: "\(tokenIDs.count) device tokens for \(prefix)-*"))

            // MARK: Figures

            let acknowledged = total.stored + total.duplicates
            if let latencyLog {
                var text = "# seconds_from_start latency_ms\n"
                for (latency, beforeEnd) in zip(total.latenciesMs, total.answeredBeforeEndMs).sorted(by: { $0.1 > $1.1 }) {
                    text += "\(Self.format(Double(seconds) - beforeEnd / 1000, 3)) \(Self.format(latency, 1))\n"
                }
                do { try text.write(toFile: latencyLog, atomically: true, encoding: .utf8) } catch {
                    print("loadtest: --latency-log \(latencyLog): cannot write: \(error.localizedDescription)")
                }
            }
            let latencies = total.latenciesMs.sorted()
            let p50 = Self.percentile(latencies, 0.50), p90 = Self.percentile(latencies, 0.90), p99 = Self.percentile(latencies, 0.99)
            let perSecond = elapsed > 0 ? Double(acknowledged) / elapsed : 0
            let growth = after.dataBytes - before.dataBytes
            let perReport = total.stored > 0 ? Double(growth) / Double(total.stored) : 0
            let perSeries = total.storedSeries > 0 ? Double(growth) / Double(total.storedSeries) : 0
            func row(_ label: String, _ value: String) { print(label.padding(toLength: 26, withPad: " ", startingAt: 0) + value) }
            print("")
            row("reports sent", "\(total.sent) in \(total.requests) requests over \(Self.format(elapsed, 1)) s")
            row("acknowledged", "\(acknowledged) (stored \(total.stored), duplicate \(total.duplicates)); \(total.storedSeries) series stored")
            row("rejected", "\(total.rejected)")
            row("not acknowledged", "\(total.sent - acknowledged - total.rejected) (retry \(total.retried), missing from answers \(total.missing), in failed requests \(total.inFailedRequests))")
            row("failed requests", "\(total.failedRequests)")
            row("throughput", "\(Self.format(perSecond, 1)) reports/s, \(Self.format(elapsed > 0 ? Double(total.storedSeries) / elapsed : 0, 0)) series/s")
            row("request latency", "p50 \(Self.format(p50, 1)) ms, p90 \(Self.format(p90, 1)) ms, p99 \(Self.format(p99, 1)) ms, max \(Self.format(latencies.last ?? 0, 1)) ms (\(latencies.count) answers)")
            if total.requests > 0 {
                row("request body", "\(total.gzipBytes / total.requests) bytes gzip, \(total.jsonBytes / total.requests) bytes JSON (mean); "
                    + "\(total.gzipBytes / Swift.max(1, total.sent)) gzip bytes per report")
                row("generator", prebuilt != nil ? "requests built before the clock started (--prebuilt): not in the timed part"
                    : "\(Self.format(Self.milliseconds(total.buildTime) / Double(total.requests), 2)) ms per request to build, encode and gzip (in this process)")
            }
            if total.reusedWindows > 0 {
                row("windows reused", "\(total.reusedWindows) reports: their device had used up its day of 5-minute windows (\(LoadWindows.slots)) and started again")
            }
            row("database", "\(database): \(after.dataBytes) bytes (before the run \(before.dataBytes))"
                + (after.logBytes > 0 || before.logBytes > 0 ? "; WAL file \(after.logBytes) bytes (\(before.logBytes) before), reused, not counted" : ""))
            row("on disk per report", "\(Self.format(perReport, 0)) bytes per report, \(Self.format(perSeries, 1)) bytes per series (growth \(growth) bytes / stored)")
            row("collector holds", "\(held) reports of the \(fleet.count) simulated devices; \(total.stored) acknowledged stored"
                + (held == total.stored ? ": no loss, no duplicates" : ": MISMATCH"))
            if !total.rejections.isEmpty {
                print("first rejections:")
                for r in total.rejections.prefix(3) { print("  \(r)") }
            }
            if !total.failures.isEmpty {
                print("first failures:")
                for f in total.failures.prefix(3) { print("  \(f)") }
            }
            print("loadtest-figures: devices=\(fleet.count) seconds=\(seconds) series=\(series) sent=\(total.sent) stored=\(total.stored) "
                  + "stored_series=\(total.storedSeries) reports_per_second=\(Self.format(perSecond, 1)) p50_ms=\(Self.format(p50, 1)) "
                  + "p99_ms=\(Self.format(p99, 1)) rejected=\(total.rejected) failed=\(total.failedRequests) db_growth_bytes=\(growth) "
                  + "bytes_per_report=\(Self.format(perReport, 0)) bytes_per_series=\(Self.format(perSeries, 1)) held=\(held)")
            print("loadtest: \(fleet.count) devices, \(seconds) s, \(Self.format(perSecond, 1)) reports/s, p50 \(Self.format(p50, 1)) ms, "
                  + "p99 \(Self.format(p99, 1)) ms, \(total.rejected) rejected, \(total.failedRequests) failed, \(Self.format(perReport, 0)) bytes/report on disk")

            var problems: [String] = []
            if total.rejected > 0 { problems.append("\(total.rejected) reports rejected") }
            if acknowledged != total.sent { problems.append("\(total.sent - acknowledged) of \(total.sent) reports not acknowledged") }
            if total.duplicates > 0 { problems.append("\(total.duplicates) reports sent once were answered duplicate") }
            if total.failedRequests > 0 { problems.append("\(total.failedRequests) requests failed") }
            if held != total.stored { problems.append("the collector holds \(held) reports of the simulated devices, \(total.stored) were acknowledged stored") }
            if !problems.isEmpty {
                printError("loadtest failed: " + problems.joined(separator: "; "))
                throw ExitCode(1)
            }
        }
    }

    /// One request, built before the clock starts (`--prebuilt`): its device, the seqs it carries, its body.
    struct PreparedRequest: Sendable {
        let device: Int
        let seqs: [UInt64]
        let jsonBytes: Int
        let body: [UInt8]
        let reusedWindows: Int
    }

    /// `requests` requests of `fleet`'s devices, round robin, as `worker` would build them.
    static func prepare(fleet: [LoadDevice], requests: Int, perRequest: Int, windows: LoadWindows) throws -> [PreparedRequest] {
        var fleet = fleet
        guard !fleet.isEmpty else { return [] }
        var out: [PreparedRequest] = []
        out.reserveCapacity(requests)
        for r in 0..<requests {
            let index = r % fleet.count
            var reports: [Report] = []
            var reused = 0
            for _ in 0..<perRequest {
                let (report, wasReused) = fleet[index].nextReport(windows: windows)
                if wasReused { reused += 1 }
                reports.append(report)
            }
            let json = try ReportJSON.encodeBatch(reports)
            out.append(PreparedRequest(device: index, seqs: reports.map(\.seq), jsonBytes: json.count, body: try Gzip.compress(json),
                                       reusedWindows: reused))
        }
        return out
    }

    /// One of `--concurrency` senders: round robin over its own devices, one request at a time, until the
    /// deadline; with `prepared`, it sends those requests in order instead of building its own, and stops
    /// early when they are all sent.
    /// Serial queues the senders build their requests on, one per core: as many builds at once as the
    /// cooperative pool ran before, but no longer on its threads.
    static let buildQueues = (0..<max(1, ProcessInfo.processInfo.activeProcessorCount)).map { DispatchQueue(label: "loadtest.build.\($0)") }

    /// A request's reports, built, encoded and gzipped (about 11 ms of CPU for ten 92-series reports) on
    /// `queue` rather than in the sender's task. On the cooperative pool, which has one thread per core, a
    /// sender whose answer had arrived waited for other senders' builds to end before it could stop its
    /// clock, so the generator's own queue was measured as the collector's latency.
    static func build(_ device: LoadDevice, reports count: Int, windows: LoadWindows, on queue: DispatchQueue) async throws
        -> (device: LoadDevice, reports: [Report], body: [UInt8], jsonBytes: Int, reusedWindows: Int, took: Duration) {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result {
                    let clock = ContinuousClock(), started = clock.now
                    var device = device
                    var reports: [Report] = []
                    reports.reserveCapacity(count)
                    var reused = 0
                    for _ in 0..<count {
                        let (report, wasReused) = device.nextReport(windows: windows)
                        if wasReused { reused += 1 }
                        reports.append(report)
                    }
                    let json = try ReportJSON.encodeBatch(reports)
                    let body = try Gzip.compress(json)
                    return (device, reports, body, json.count, reused, clock.now - started)
                })
            }
        }
    }

    static func worker(fleet: [LoadDevice], client: HTTPClient, endpoint: String, until deadline: ContinuousClock.Instant,
                       perRequest: Int, windows: LoadWindows, sink: LoadLineSink?, prepared: [PreparedRequest]? = nil,
                       buildQueue: DispatchQueue = buildQueues[0]) async throws -> LoadTally {
        var fleet = fleet
        var tally = LoadTally()
        guard !fleet.isEmpty else { return tally }
        let clock = ContinuousClock()
        let decoder = JSONDecoder()
        var next = 0
        var failuresInARow = 0
        var preparedNext = 0
        while clock.now < deadline {
            if failuresInARow >= 20 {
                tally.note(failure: "a sender stopped after 20 failed requests in a row")
                break
            }
            let index: Int
            let seqs: [UInt64]
            let body: [UInt8]
            var reports: [Report] = []
            if let prepared {
                guard preparedNext < prepared.count else { break }
                let p = prepared[preparedNext]
                preparedNext += 1
                index = p.device
                seqs = p.seqs
                body = p.body
                tally.reusedWindows += p.reusedWindows
                tally.jsonBytes += p.jsonBytes
            } else {
                index = next
                next = (next + 1) % fleet.count
                let built = try await Self.build(fleet[index], reports: perRequest, windows: windows, on: buildQueue)
                fleet[index] = built.device
                reports = built.reports
                body = built.body
                tally.reusedWindows += built.reusedWindows
                seqs = reports.map(\.seq)
                tally.buildTime += built.took
                tally.jsonBytes += built.jsonBytes
            }
            tally.requests += 1
            tally.sent += seqs.count
            tally.gzipBytes += body.count

            var request = HTTPClientRequest(url: endpoint)
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(fleet[index].token)")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Content-Encoding", value: "gzip")
            request.body = .bytes(body)
            let sending = clock.now
            do {
                let response = try await client.execute(request, timeout: .seconds(120))
                var buffer = try await response.body.collect(upTo: 16 << 20)
                let answered = clock.now
                tally.latenciesMs.append(milliseconds(answered - sending))
                tally.answeredBeforeEndMs.append(milliseconds(deadline - answered))
                let answer = buffer.readBytes(length: buffer.readableBytes) ?? []
                guard response.status == .ok else {
                    throw LoadFailure("HTTP \(response.status.code): \(String(decoding: answer.prefix(400), as: UTF8.self))")
                }
                let ack: BatchAcknowledgement
                do { ack = try decoder.decode(BatchAcknowledgement.self, from: Data(answer)) } catch {
                    throw LoadFailure("HTTP 200 whose body is not a BatchAcknowledgement: \(CollectorAPI.describe(error))")
                }
                tally.count(ack, device: fleet[index].id, seqs: seqs)
                failuresInARow = 0
            } catch {
                tally.failedRequests += 1
                tally.inFailedRequests += seqs.count
                tally.note(failure: "\(fleet[index].id) seq \(seqs[0])…\(seqs[seqs.count - 1]): \(error)")
                failuresInARow += 1
                try? await Task.sleep(for: .milliseconds(200))
            }
            if let sink, !reports.isEmpty { try await sink.write(reports) }
        }
        return tally
    }

    /// `--generate-only`: the fleet's reports, in the order a live run sends them, into the line-protocol file.
    static func generate(fleet: [LoadDevice], count: Int, perRequest: Int, windows: LoadWindows, sink: LoadLineSink) async throws {
        var fleet = fleet
        var made = 0, series = 0, next = 0
        var pending: [Report] = []
        while made < count {
            for _ in 0..<Swift.min(perRequest, count - made) {
                let report = fleet[next].nextReport(windows: windows).report
                series += report.series.count
                pending.append(report)
                made += 1
            }
            next = (next + 1) % fleet.count
            if pending.count >= 200 {
                try await sink.write(pending)
                pending.removeAll(keepingCapacity: true)
            }
        }
        if !pending.isEmpty { try await sink.write(pending) }
        let (lines, fields, bytes) = try await sink.close()
        print("loadtest: generated \(made) reports (\(series) series) of \(fleet.count) devices without sending: "
              + "\(lines) lines, \(fields) values, \(bytes) bytes of line protocol")
        print("loadtest-generated: reports=\(made) series=\(series) lines=\(lines) fields=\(fields) bytes=\(bytes)")
    }

    /// Reports as for `generate`, each report's series of each data class encoded as stored (uncompressed),
    /// then zstd's trainer over all of them.
    static func train(fleet: [LoadDevice], count: Int, perRequest: Int, windows: LoadWindows, to path: String) throws {
        var fleet = fleet
        var samples: [[UInt8]] = []
        var made = 0, next = 0
        while made < count {
            for _ in 0..<Swift.min(perRequest, count - made) {
                let report = fleet[next].nextReport(windows: windows).report
                var byClass: [DataClass: [Series]] = [:]
                for var s in report.series {
                    // Pseudonyms are random per client: a dictionary cannot use them, so none goes into it.
                    for k in ["client", "peer"] where s.labels[k] != nil { s.labels[k] = "" }
                    byClass[MetricCatalog.descriptor(named: s.metric)!.dataClass, default: []].append(s)
                }
                for c in byClass.keys.sorted() { samples.append(SeriesCodec.encode(byClass[c]!)) }
                made += 1
            }
            next = (next + 1) % fleet.count
        }
        let bytes = samples.reduce(0) { $0 + $1.count }
        let dictionary = try PayloadDictionaries.train(samples: samples, capacity: 112_640)
        guard FileManager.default.createFile(atPath: path, contents: Data(dictionary)) else { throw LoadFailure("cannot write \(path)") }
        print("loadtest: trained a \(dictionary.count)-byte dictionary on \(samples.count) payloads (\(bytes) bytes) of \(made) reports of \(fleet.count) devices into \(path)")
    }

    // MARK: Helpers

    static func milliseconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15
    }

    /// Nearest rank: the smallest value with at least q·n values at or below it.
    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
        return sorted[Swift.min(Swift.max(rank, 0), sorted.count - 1)]
    }

    static func format(_ x: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", x) }
}

struct LoadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What one sender saw; merged over all senders at the end.
struct LoadTally: Sendable {
    var requests = 0
    var sent = 0
    var stored = 0
    var storedSeries = 0
    var duplicates = 0
    var rejected = 0
    var retried = 0
    var missing = 0
    var failedRequests = 0
    var inFailedRequests = 0
    var reusedWindows = 0
    var jsonBytes = 0
    var gzipBytes = 0
    var buildTime: Duration = .zero
    var latenciesMs: [Double] = []
    /// For each latency, how long before the end of the run its answer came (for `--latency-log`).
    var answeredBeforeEndMs: [Double] = []
    var rejections: [String] = []
    var failures: [String] = []

    mutating func note(failure: String) {
        if failures.count < 3 { failures.append(failure) }
    }

    /// Counts the answer for each report of the request; a report without a result is missing.
    mutating func count(_ ack: BatchAcknowledgement, device: String, seqs: [UInt64]) {
        var bySeq: [UInt64: BatchAcknowledgement.Result] = [:]
        for result in ack.results { bySeq[result.seq] = result }
        for seq in seqs {
            guard ack.device == device, let result = bySeq[seq] else {
                missing += 1
                continue
            }
            switch result.status {
            case .stored:
                stored += 1
                storedSeries += result.storedSeries
            case .duplicate:
                duplicates += 1
            case .rejected:
                rejected += 1
                if rejections.count < 3 {
                    let why = result.error.map { "\($0.code) at \($0.path ?? "-"): \($0.message)" } ?? "no reason given"
                    rejections.append("\(device) seq \(seq): \(why)")
                }
            default:
                retried += 1
            }
        }
    }

    mutating func merge(_ o: LoadTally) {
        requests += o.requests
        sent += o.sent
        stored += o.stored
        storedSeries += o.storedSeries
        duplicates += o.duplicates
        rejected += o.rejected
        retried += o.retried
        missing += o.missing
        failedRequests += o.failedRequests
        inFailedRequests += o.inFailedRequests
        reusedWindows += o.reusedWindows
        jsonBytes += o.jsonBytes
        gzipBytes += o.gzipBytes
        buildTime += o.buildTime
        latenciesMs += o.latenciesMs
        answeredBeforeEndMs += o.answeredBeforeEndMs
        rejections += o.rejections.prefix(Swift.max(0, 3 - rejections.count))
        failures += o.failures.prefix(Swift.max(0, 3 - failures.count))
    }
}

/// The window clock every simulated device shares: 5-minute windows, the oldest starting 24 hours before the
/// run began, the newest ending before it began, so the collector's validator accepts every one.
struct LoadWindows: Sendable {
    static let lengthMs: Int64 = 300_000
    /// Windows per device before it starts again at the oldest: a day of 5-minute windows, less one for the
    /// device's offset (each device's windows start 0–299 s after the grid, as agents' do).
    static let slots: UInt64 = 287
    let firstStartMs: Int64

    init(nowMs: Int64, recent: Bool = false) {
        firstStartMs = nowMs - (recent ? 3 : Int64(Self.slots + 1)) * Self.lengthMs
    }

    /// Window of report `seq` (1, 2, …) of a device whose windows start `offsetMs` after the grid; `reused` when
    /// the device has gone round the day at least once.
    func window(seq: UInt64, offsetMs: Int64) -> (start: Int64, end: Int64, reused: Bool) {
        let start = firstStartMs + offsetMs + Int64((seq - 1) % Self.slots) * Self.lengthMs
        return (start, start + Self.lengthMs, seq > Self.slots)
    }
}

/// One simulated router: its pseudonymous id, token, fixed make-up (interfaces, radios, clients) and the
/// random stream its values come from.
struct LoadDevice: Sendable {
    let id: String
    var token = ""
    let profile: LoadProfile
    var random: LoadRandom
    var seq: UInt64 = 0

    init(id: String, index: Int, seed: UInt64, seriesCount: Int, windows: LoadWindows) {
        var random = LoadRandom(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) ^ 0x6D65_6574_7075_6E74)
        self.id = id
        self.profile = LoadProfile(seriesCount: seriesCount, earliestMs: windows.firstStartMs, random: &random)
        self.random = random
    }

    mutating func nextReport(windows: LoadWindows) -> (report: Report, reused: Bool) {
        seq += 1
        let w = windows.window(seq: seq, offsetMs: profile.windowOffsetMs)
        var r = random
        // The simulated day starts at midnight with the device's first window, so a seed gives the same values
        // whenever the run starts (only the timestamps move with the clock).
        let hour = Double((seq - 1) % LoadWindows.slots) / 12
        let series = profile.series(windowStartMs: w.start, hourOfDay: hour, random: &r)
        random = r
        let report = Report(device: id, seq: seq, windowStartMs: w.start, windowEndMs: w.end,
                            keyEpoch: UInt32(w.start / 1000 / (30 * 86_400)), agentVersion: "0.3.0", series: series)
        return (report, w.reused)
    }
}

/// SplitMix64: small, fast, and the same sequence on every platform for a seed.
struct LoadRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func chance(_ p: Double) -> Bool { unit() < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u = Swift.max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }

    mutating func logNormal(median: Double, sigma: Double) -> Double { median * exp(sigma * normal()) }

    /// `n` values from `make`.
    mutating func draw(_ n: Int, _ make: (inout LoadRandom) -> Double) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(make(&self)) }
        return out
    }

    /// A counter delta that is mostly 0: with probability `p` per sample, 1…`most`.
    mutating func rare(_ n: Int, _ p: Double, _ most: Int) -> [Double] {
        draw(n) { r in r.chance(p) ? Double(r.int(1...most)) : 0 }
    }
}

/// A router's make-up, fixed for the run: which interfaces, radios, neighbouring channels and clients it
/// has, and which series of each it ships (exactly `seriesCount` in all), and the levels its values move around.
struct LoadProfile: Sendable {
    struct Interface: Sendable {
        let name: String
        /// Ethernet ports report a speed; the bridge and the Wi-Fi interfaces do not.
        let speedMbps: Double?
        let mtu: Double
        let rxMedianBps: Double
        let txMedianBps: Double
        var metrics: [String]
    }

    struct Neighbour: Sendable {
        let channel: Int
        let bss: Int
        let signalDbm: Double
        var metrics: [String]
    }

    struct Radio: Sendable {
        let interface: String
        let band: String
        let frequencyMhz: Double
        let widthMhz: Double
        let txPowerDbm: Double
        let noiseDbm: Double
        let utilisation: Double
        var metrics: [String]
        var neighbours: [Neighbour]
    }

    struct Client: Sendable {
        let pseudonym: String
        let macKind: String
        let oui: String
        /// Index into `radios` for a Wi-Fi station; nil for a wired client.
        let radio: Int?
        let signalDbm: Double
        let phyBps: Double
        let mcs: Double
        let nss: Double
        let widthMhz: Double
        let generation: Double
        let trafficMedianBps: Double
        let connectedSinceS: Int64
        var stationMetrics: [String]
    }

    /// Samples per window: a 5-minute window sampled every 10 s.
    static let samples = 30

    static let agentMetrics = ["agent.guard_dropped_series", "agent.dropped_series", "agent.dropped_reports", "agent.dropped_batches",
                               "agent.unspooled_reports", "agent.spool.reports", "agent.spool.bytes", "agent.rejected_reports",
                               "agent.config.version"]
    static let systemCore = ["system.cpu_busy", "system.memory_available", "system.memory_total", "system.load1", "system.temperature"]
    /// `system.temperature+wifi` is a second thermal zone: the same metric with another `zone`.
    static let systemExtras = ["system.conntrack_entries", "system.conntrack_max", "system.temperature+wifi"]
    static let otherCore = ["lan.clients"]
    static let otherExtras = ["lan.clients_new", "lan.clients_gone", "lan.clients_unreported", "lan.neighbours_unread",
                              "wifi.dumps_interrupted", "wifi.events_dropped"]
    static let linkCoreWithSpeed = ["link.rx_bytes", "link.tx_bytes", "link.rx_packets", "link.tx_packets", "link.rx_rate", "link.tx_rate",
                                    "link.oper_up", "link.speed"]
    static let linkCoreWithoutSpeed = ["link.rx_bytes", "link.tx_bytes", "link.rx_packets", "link.tx_packets", "link.rx_rate", "link.tx_rate",
                                       "link.oper_up", "link.carrier"]
    static let linkExtrasWithSpeed = ["link.rx_errors", "link.tx_errors", "link.rx_dropped", "link.tx_dropped", "link.carrier",
                                      "link.carrier_changes", "link.mtu", "link.full_duplex", "link.counter_resets"]
    static let linkExtrasWithoutSpeed = ["link.rx_errors", "link.tx_errors", "link.rx_dropped", "link.tx_dropped",
                                         "link.carrier_changes", "link.mtu", "link.counter_resets"]
    static let radioCore = ["wifi.radio.frequency", "wifi.radio.noise_dbm", "wifi.radio.channel_utilisation", "wifi.radio.stations"]
    static let radioExtras = ["wifi.radio.channel_width", "wifi.radio.tx_power_dbm", "wifi.radio.noise_implausible",
                              "wifi.radio.own_bss_share", "wifi.radio.other_bss_share", "wifi.radio.survey_implausible",
                              "wifi.radio.stations_new", "wifi.radio.stations_gone", "wifi.radio.stations_unreported",
                              "wifi.radio.associations", "wifi.radio.disassociations"]
    static let neighbourMetrics = ["wifi.neighbour.bss_count", "wifi.neighbour.signal_dbm"]
    static let stationCore = ["wifi.station.signal_dbm", "wifi.station.tx_bitrate", "wifi.station.rx_bytes", "wifi.station.tx_bytes"]
    static let stationExtras = ["wifi.station.signal_avg_dbm", "wifi.station.ack_signal_dbm", "wifi.station.snr_db", "wifi.station.rx_bitrate",
                                "wifi.station.tx_mcs", "wifi.station.rx_mcs", "wifi.station.tx_nss", "wifi.station.tx_width",
                                "wifi.station.tx_generation", "wifi.station.expected_throughput", "wifi.station.rx_packets",
                                "wifi.station.tx_packets", "wifi.station.tx_retries", "wifi.station.tx_failed", "wifi.station.rx_drop_misc",
                                "wifi.station.tx_airtime", "wifi.station.rx_airtime", "wifi.station.inactive", "wifi.station.connected_time",
                                "wifi.station.authorized", "wifi.station.txq_backlog", "wifi.station.txq_drops"]
    /// Vendor prefixes of globally administered client MACs (phones with randomised MACs report `00-00-00`).
    static let ouis = ["3C-22-FB", "F0-18-98", "00-1B-21", "B8-27-EB", "DC-A6-32", "44-65-0D", "00-17-88", "F4-F5-D8",
                       "A4-83-E7", "28-6C-07", "E4-5F-01", "18-B4-30"]
    /// Per spatial stream, Mbit/s: HT 20 MHz short GI (2.4 GHz), VHT and HE 80 MHz (5 GHz).
    static let htRates = [7.2, 14.4, 21.7, 28.9, 43.3, 57.8, 65.0, 72.2]
    static let vhtRates = [32.5, 65.0, 97.5, 130.0, 195.0, 260.0, 292.5, 325.0, 390.0, 433.3]
    static let heRates = [36.0, 72.1, 108.1, 144.1, 216.2, 288.2, 324.3, 360.3, 432.4, 480.4, 540.4, 600.5]
    static let bridge = "br-lan"

    let windowOffsetMs: Int64
    let interfaces: [Interface]
    let radios: [Radio]
    let clients: [Client]
    let systemMetrics: [String]
    let otherMetrics: [String]
    let memoryTotal: Double
    let memoryFreeShare: Double
    let cpuBusy: Double
    let load: Double
    let temperature: Double
    let conntrackBase: Double
    let conntrackMax: Double

    init(seriesCount: Int, earliestMs: Int64, random r: inout LoadRandom) {
        windowOffsetMs = Int64(r.int(0...299)) * 1000
        memoryTotal = r.pick([256.0, 512.0, 1024.0]) * 1_048_576
        memoryFreeShare = r.uniform(0.25, 0.65)
        cpuBusy = r.uniform(0.03, 0.35)
        load = r.uniform(0.05, 1.5)
        temperature = r.uniform(42, 68)
        conntrackBase = r.uniform(150, 2500)
        conntrackMax = r.pick([16_384.0, 32_768.0, 65_536.0])

        // Radios: 2.4 GHz on wlan0, 5 GHz on wlan1, each with neighbouring networks on other channels.
        let ch24 = r.pick([1, 6, 11]), ch5 = r.pick([36, 44, 100, 149])
        var radios: [Radio] = []
        for (interface, band, channel, others, width, power) in [("wlan0", "2.4", ch24, [1, 6, 11], 20.0, 20.0),
                                                                  ("wlan1", "5", ch5, [36, 44, 100, 149], 80.0, 23.0)] {
            var neighbours: [Neighbour] = []
            for c in others where c != channel {
                neighbours.append(Neighbour(channel: c, bss: band == "5" ? r.int(1...3) : r.int(1...6), signalDbm: r.uniform(-85, -55).rounded(), metrics: []))
            }
            let frequency = band == "5" ? Double(5000 + 5 * channel) : Double(2407 + 5 * channel)
            radios.append(Radio(interface: interface, band: band, frequencyMhz: frequency, widthMhz: width, txPowerDbm: power,
                                noiseDbm: (band == "5" ? r.uniform(-100, -92) : r.uniform(-96, -88)).rounded(),
                                utilisation: band == "5" ? r.uniform(0.03, 0.35) : r.uniform(0.15, 0.6),
                                metrics: Self.radioCore, neighbours: neighbours))
        }

        // Interfaces: 4–6, as many as the series budget allows with room for at least one station.
        let core = Self.agentMetrics.count + Self.systemCore.count + Self.otherCore.count + radios.count * Self.radioCore.count
        let perInterface = Self.linkCoreWithSpeed.count
        let most = Swift.min(6, Swift.max(4, (seriesCount - core - 5) / perInterface))
        let count = r.int(4...most)
        let wanRx = r.logNormal(median: 25e6, sigma: 0.8), wanTx = wanRx * r.uniform(0.08, 0.3)
        let wanSpeed = r.pick([1000.0, 1000.0, 2500.0]), wanMTU = r.pick([1500.0, 1492.0])
        let all: [(String, Double?, Double, Double, Double)] = [
            ("wan", wanSpeed, wanMTU, wanRx, wanTx),
            (Self.bridge, nil, 1500, wanTx * 0.95, wanRx * 0.95),
            ("wlan1", nil, 1500, wanTx * 0.5, wanRx * 0.55),
            ("wlan0", nil, 1500, wanTx * 0.2, wanRx * 0.2),
            ("lan1", 1000, 1500, wanTx * 0.2, wanRx * 0.15),
            ("lan2", 1000, 1500, wanTx * 0.1, wanRx * 0.1),
        ]
        var interfaces = all.prefix(count).map { name, speed, mtu, rx, tx in
            Interface(name: name, speedMbps: speed, mtu: mtu, rxMedianBps: rx, txMedianBps: tx,
                      metrics: speed == nil ? Self.linkCoreWithoutSpeed : Self.linkCoreWithSpeed)
        }
        var remaining = seriesCount - core - perInterface * count

        // Clients: Wi-Fi stations (four station series and lan.client.reachable each), then wired clients.
        let maxStations = Swift.max(1, Swift.min(8, remaining / 5))
        let stations = r.int(Swift.min(2, maxStations)...maxStations)
        remaining -= 5 * stations
        let wired = r.int(0...Swift.min(6, Swift.max(0, remaining)))
        remaining -= wired
        var clients: [Client] = []
        func addClient(station: Bool, _ r: inout LoadRandom) {
            let local = r.chance(station ? 0.6 : 0.2)
            var pseudonym = "cm_"
            let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
            for _ in 0..<24 { pseudonym.append(alphabet[r.int(0...31)]) }
            let radio: Int? = station ? (r.chance(0.65) ? 1 : 0) : nil
            let generation: Double, width: Double, perStream: Double, mcs: Int
            let nss = r.pick([1.0, 2.0, 2.0])
            if radio == 0 || radio == nil {
                generation = 4; width = 20; mcs = r.int(3...7); perStream = Self.htRates[mcs]
            } else if r.chance(0.5) {
                generation = 6; width = 80; mcs = r.int(4...11); perStream = Self.heRates[mcs]
            } else {
                generation = 5; width = 80; mcs = r.int(4...9); perStream = Self.vhtRates[mcs]
            }
            clients.append(Client(pseudonym: pseudonym, macKind: local ? "local" : "global", oui: local ? "00-00-00" : r.pick(Self.ouis),
                                  radio: radio, signalDbm: (radio == 1 ? r.uniform(-78, -50) : r.uniform(-75, -45)).rounded(),
                                  phyBps: perStream * nss * 1e6, mcs: Double(mcs), nss: nss, widthMhz: width, generation: generation,
                                  trafficMedianBps: r.logNormal(median: 200e3, sigma: 1.5),
                                  connectedSinceS: earliestMs / 1000 - Int64(r.int(60...(7 * 86_400))),
                                  stationMetrics: station ? Self.stationCore : []))
        }
        for _ in 0..<stations { addClient(station: true, &r) }
        for _ in 0..<wired { addClient(station: false, &r) }

        // The rest of the budget: optional series of every component, in a random order for this device.
        enum Extra {
            case link(Int, String), radio(Int, String), neighbour(Int, Int, String), station(Int, String), system(String), other(String)
        }
        var pool: [Extra] = []
        for (i, interface) in interfaces.enumerated() {
            for m in interface.speedMbps == nil ? Self.linkExtrasWithoutSpeed : Self.linkExtrasWithSpeed { pool.append(.link(i, m)) }
        }
        for (i, radio) in radios.enumerated() {
            for m in Self.radioExtras { pool.append(.radio(i, m)) }
            for j in radio.neighbours.indices { for m in Self.neighbourMetrics { pool.append(.neighbour(i, j, m)) } }
        }
        for (i, client) in clients.enumerated() where client.radio != nil {
            for m in Self.stationExtras { pool.append(.station(i, m)) }
        }
        for m in Self.systemExtras { pool.append(.system(m)) }
        for m in Self.otherExtras { pool.append(.other(m)) }
        pool.shuffle(using: &r)
        var systemMetrics = Self.systemCore, otherMetrics = Self.otherCore
        for extra in pool.prefix(Swift.max(0, remaining)) {
            switch extra {
            case .link(let i, let m): interfaces[i].metrics.append(m)
            case .radio(let i, let m): radios[i].metrics.append(m)
            case .neighbour(let i, let j, let m): radios[i].neighbours[j].metrics.append(m)
            case .station(let i, let m): clients[i].stationMetrics.append(m)
            case .system(let m): systemMetrics.append(m)
            case .other(let m): otherMetrics.append(m)
            }
        }
        // Past the pool (not reached for 60–100 series), more wired clients: one series each.
        for _ in 0..<Swift.max(0, remaining - pool.count) { addClient(station: false, &r) }

        self.interfaces = interfaces
        self.radios = radios
        self.clients = clients
        self.systemMetrics = systemMetrics
        self.otherMetrics = otherMetrics
    }

    /// The series of the window starting at `start` at `hour` (0..<24) of the simulated day, in the order the
    /// agent's samplers add them.
    func series(windowStartMs start: Int64, hourOfDay hour: Double, random r: inout LoadRandom) -> [Series] {
        let n = Self.samples
        // Busier in the evening: 0.1 at 09:00, 1.0 at 21:00.
        let f = 0.55 + 0.45 * cos(2 * Double.pi * (hour - 21) / 24)
        var out: [Series] = []
        out.reserveCapacity(100)
        func add(_ metric: String, _ labels: [String: String], _ values: [Double]) { out.append(Self.fold(metric, labels, values)) }
        func constant(_ v: Double) -> [Double] { Array(repeating: v, count: n) }

        for interface in interfaces {
            let labels = ["interface": interface.name]
            let cap = (interface.speedMbps ?? 1200) * 1e6 * 0.95
            let rxBytes = r.draw(n) { (Swift.min(cap, $0.logNormal(median: interface.rxMedianBps * f, sigma: 0.9)) * 10 / 8).rounded() }
            let txBytes = r.draw(n) { (Swift.min(cap, $0.logNormal(median: interface.txMedianBps * f, sigma: 0.9)) * 10 / 8).rounded() }
            for m in interface.metrics {
                switch m {
                case "link.rx_bytes": add(m, labels, rxBytes)
                case "link.tx_bytes": add(m, labels, txBytes)
                case "link.rx_packets": add(m, labels, rxBytes.map { ($0 / 1150).rounded(.up) })
                case "link.tx_packets": add(m, labels, txBytes.map { ($0 / 420).rounded(.up) })
                case "link.rx_rate": add(m, labels, rxBytes.map { $0 * 8 / 10 })
                case "link.tx_rate": add(m, labels, txBytes.map { $0 * 8 / 10 })
                case "link.oper_up", "link.carrier", "link.full_duplex": add(m, labels, constant(1))
                case "link.speed": add(m, labels, constant(interface.speedMbps ?? 1000))
                case "link.mtu": add(m, labels, constant(interface.mtu))
                case "link.rx_errors", "link.tx_errors": add(m, labels, r.rare(n, 0.002, 3))
                case "link.rx_dropped", "link.tx_dropped": add(m, labels, r.rare(n, 0.03, 25))
                case "link.carrier_changes", "link.counter_resets": add(m, labels, r.rare(n, 0.0003, 1))
                default: preconditionFailure("loadtest has no values for \(m)")
                }
            }
        }

        let lan = ["interface": Self.bridge]
        for m in otherMetrics {
            switch m {
            case "lan.clients": add(m, lan, constant(Double(clients.count)))
            case "lan.clients_new", "lan.clients_gone": add(m, lan, r.rare(n, 0.01, 1))
            case "lan.clients_unreported": add(m, lan, constant(0))
            case "lan.neighbours_unread", "wifi.events_dropped": add(m, [:], constant(0))
            case "wifi.dumps_interrupted": add(m, [:], r.rare(n, 0.002, 1))
            default: preconditionFailure("loadtest has no values for \(m)")
            }
        }
        for client in clients {
            let labels = ["interface": Self.bridge, "client": client.pseudonym, "mac_kind": client.macKind, "oui": client.oui]
            let p = client.radio == nil ? 0.85 : 0.95
            add("lan.client.reachable", labels, r.draw(n) { $0.chance(p) ? 1 : 0 })
        }

        for (index, radio) in radios.enumerated() {
            let labels = ["interface": radio.interface, "band": radio.band]
            let stations = Double(clients.filter { $0.radio == index }.count)
            let busy = r.draw(n) { Swift.min(0.98, Swift.max(0.005, radio.utilisation * (0.5 + 0.5 * f) * $0.logNormal(median: 1, sigma: 0.3))) }
            for m in radio.metrics {
                switch m {
                case "wifi.radio.frequency": add(m, labels, constant(radio.frequencyMhz))
                case "wifi.radio.channel_width": add(m, labels, constant(radio.widthMhz))
                case "wifi.radio.tx_power_dbm": add(m, labels, constant(radio.txPowerDbm))
                case "wifi.radio.noise_dbm": add(m, labels, r.draw(n) { (radio.noiseDbm + $0.normal()).rounded() })
                case "wifi.radio.noise_implausible", "wifi.radio.survey_implausible", "wifi.radio.stations_unreported": add(m, labels, constant(0))
                case "wifi.radio.channel_utilisation": add(m, labels, busy)
                case "wifi.radio.own_bss_share": add(m, labels, busy.map { $0 * 0.55 })
                case "wifi.radio.other_bss_share": add(m, labels, busy.map { $0 * 0.35 })
                case "wifi.radio.stations": add(m, labels, constant(stations))
                case "wifi.radio.stations_new", "wifi.radio.stations_gone", "wifi.radio.associations": add(m, labels, r.rare(n, 0.01, 1))
                case "wifi.radio.disassociations": add(m, labels.merging(["reason": "8"]) { a, _ in a }, r.rare(n, 0.01, 1))
                default: preconditionFailure("loadtest has no values for \(m)")
                }
            }
            for neighbour in radio.neighbours where !neighbour.metrics.isEmpty {
                let channel = labels.merging(["channel": String(neighbour.channel)]) { a, _ in a }
                for m in neighbour.metrics {
                    switch m {
                    case "wifi.neighbour.bss_count": add(m, channel, constant(Double(neighbour.bss)))
                    case "wifi.neighbour.signal_dbm":
                        // One value per BSS per scan.
                        var values: [Double] = []
                        values.reserveCapacity(n * neighbour.bss)
                        for _ in 0..<n {
                            for b in 0..<neighbour.bss { values.append((neighbour.signalDbm - 4 * Double(b) + 1.5 * r.normal()).rounded()) }
                        }
                        add(m, channel, values)
                    default: preconditionFailure("loadtest has no values for \(m)")
                    }
                }
            }
        }

        for client in clients {
            guard let index = client.radio else { continue }
            let radio = radios[index]
            let labels = ["interface": radio.interface, "band": radio.band, "peer": client.pseudonym]
            let signal = r.draw(n) { Swift.min(-25, Swift.max(-95, (client.signalDbm + 2 * $0.normal()).rounded())) }
            let rxBytes = r.draw(n) { ($0.logNormal(median: client.trafficMedianBps * f, sigma: 1.3) * 10 / 8).rounded() }
            let txBytes = r.draw(n) { ($0.logNormal(median: 4 * client.trafficMedianBps * f, sigma: 1.3) * 10 / 8).rounded() }
            func airtime(_ bytes: [Double]) -> [Double] { bytes.map { Swift.min(10e6, ($0 * 8 / client.phyBps * 1e6).rounded()) } }
            for m in client.stationMetrics {
                switch m {
                case "wifi.station.signal_dbm": add(m, labels, signal)
                case "wifi.station.signal_avg_dbm": add(m, labels, constant((signal.reduce(0, +) / Double(n)).rounded()))
                case "wifi.station.ack_signal_dbm": add(m, labels, signal.map { $0 + 2 })
                case "wifi.station.snr_db": add(m, labels, signal.map { $0 - radio.noiseDbm })
                case "wifi.station.tx_bitrate": add(m, labels, r.draw(n) { (client.phyBps * $0.uniform(0.55, 1) / 100_000).rounded() * 100_000 })
                case "wifi.station.rx_bitrate": add(m, labels, r.draw(n) { (client.phyBps * $0.uniform(0.4, 0.9) / 100_000).rounded() * 100_000 })
                case "wifi.station.tx_mcs", "wifi.station.rx_mcs": add(m, labels, constant(client.mcs))
                case "wifi.station.tx_nss": add(m, labels, constant(client.nss))
                case "wifi.station.tx_width": add(m, labels, constant(client.widthMhz))
                case "wifi.station.tx_generation": add(m, labels, constant(client.generation))
                case "wifi.station.expected_throughput": add(m, labels, constant((client.phyBps * 0.62 / 1000).rounded() * 1000))
                case "wifi.station.rx_bytes": add(m, labels, rxBytes)
                case "wifi.station.tx_bytes": add(m, labels, txBytes)
                case "wifi.station.rx_packets": add(m, labels, rxBytes.map { ($0 / 300).rounded(.up) })
                case "wifi.station.tx_packets": add(m, labels, txBytes.map { ($0 / 1100).rounded(.up) })
                case "wifi.station.tx_retries":
                    var retries: [Double] = []
                    retries.reserveCapacity(n)
                    for bytes in txBytes { retries.append((bytes / 1100 * r.uniform(0, 0.12)).rounded()) }
                    add(m, labels, retries)
                case "wifi.station.tx_failed", "wifi.station.rx_drop_misc", "wifi.station.txq_drops": add(m, labels, r.rare(n, 0.02, 3))
                case "wifi.station.tx_airtime": add(m, labels, airtime(txBytes))
                case "wifi.station.rx_airtime": add(m, labels, airtime(rxBytes))
                case "wifi.station.inactive": add(m, labels, r.draw(n) { $0.uniform(0, 3000).rounded() })
                case "wifi.station.connected_time":
                    add(m, labels, (0..<n).map { Double(start / 1000 - client.connectedSinceS + Int64(10 * $0)) })
                case "wifi.station.authorized": add(m, labels, constant(1))
                case "wifi.station.txq_backlog": add(m, labels, r.draw(n) { $0.chance(0.9) ? 0 : Double($0.int(1...12)) })
                default: preconditionFailure("loadtest has no values for \(m)")
                }
            }
        }

        for m in systemMetrics {
            switch m {
            case "system.cpu_busy":
                add(m, [:], r.draw(n) { Swift.min(1, Swift.max(0.002, cpuBusy * (0.4 + 0.6 * f) * $0.logNormal(median: 1, sigma: 0.5))) })
            case "system.memory_total": add(m, [:], constant(memoryTotal))
            case "system.memory_available":
                add(m, [:], r.draw(n) { (memoryTotal * memoryFreeShare * (1 + 0.01 * $0.normal()) / 4096).rounded() * 4096 })
            case "system.load1": add(m, [:], r.draw(n) { Swift.max(0, ((load * (0.5 + 0.5 * f) + 0.1 * $0.normal()) * 100).rounded() / 100) })
            case "system.temperature":
                add(m, ["zone": "cpu-thermal"], r.draw(n) { ((temperature + 4 * f + 0.4 * $0.normal()) * 1000).rounded() / 1000 })
            case "system.temperature+wifi":
                add("system.temperature", ["zone": "wifi-phy0"], r.draw(n) { ((temperature - 3 + 4 * f + 0.4 * $0.normal()) * 1000).rounded() / 1000 })
            case "system.conntrack_entries":
                add(m, [:], r.draw(n) { (conntrackBase * (0.3 + 0.7 * f) * $0.logNormal(median: 1, sigma: 0.15)).rounded() })
            case "system.conntrack_max": add(m, [:], constant(conntrackMax))
            default: preconditionFailure("loadtest has no values for \(m)")
            }
        }

        // The agent's own series: one value per window.
        for m in Self.agentMetrics {
            let value: Double
            switch m {
            case "agent.spool.reports": value = Double(r.int(0...2))
            case "agent.spool.bytes": value = Double(r.int(1...6) * 4096)
            default: value = 0
            }
            add(m, [:], [value])
        }
        return out
    }

    /// One series from its samples, with the catalog's unit, and a sketch when the catalog's kind has one.
    static func fold(_ metric: String, _ labels: [String: String], _ values: [Double]) -> Series {
        guard let d = MetricCatalog.descriptor(named: metric) else { preconditionFailure("loadtest: \(metric) is not in the metric catalog") }
        var low = values[0], high = values[0], sum = 0.0
        var sketch: QuantileSketch? = d.kind.isSketched ? QuantileSketch() : nil
        for v in values {
            low = Swift.min(low, v)
            high = Swift.max(high, v)
            sum += v
            sketch?.add(v)
        }
        let mean = Swift.min(high, Swift.max(low, sum / Double(values.count)))
        return Series(metric: metric, unit: d.unit, labels: labels, count: values.count, min: low, max: high, mean: mean,
                      last: values[values.count - 1], sum: sum, sketch: sketch)
    }
}

/// InfluxDB line protocol of reports, for loading the same data into another time-series store: one line per
/// series, measurement = metric, tags = device and the labels, fields = count, min, max, mean, last, sum and one
/// per sketch bucket (`zero`, `b<index>` for positive values, `n<index>` for negative ones; a minus sign in an
/// index is written `m`), timestamp = window end in milliseconds (write with `precision=ms`).
actor LoadLineSink {
    private let handle: FileHandle
    private var lines = 0
    private var fields = 0
    private var bytes = 0

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw LoadFailure("cannot create \(path)")
        }
        self.handle = handle
    }

    func write(_ reports: [Report]) throws {
        var text = ""
        text.reserveCapacity(reports.count * 20_000)
        for report in reports {
            for s in report.series {
                text += Self.escape(s.metric, key: false)
                var tags = s.labels
                tags["device"] = report.device
                for (k, v) in tags.sorted(by: { $0.key < $1.key }) { text += "," + Self.escape(k, key: true) + "=" + Self.escape(v, key: true) }
                text += " count=\(s.count),min=\(s.min),max=\(s.max),mean=\(s.mean),last=\(s.last),sum=\(s.sum)"
                fields += 6
                if let sketch = s.sketch {
                    if sketch.zeroCount > 0 {
                        text += ",zero=\(sketch.zeroCount)"
                        fields += 1
                    }
                    for (prefix, store) in [("b", sketch.buckets), ("n", sketch.negativeBuckets)] {
                        for i in store.keys.sorted() {
                            text += "," + prefix + (i < 0 ? "m" + String(-Int(i)) : String(i)) + "=" + String(store[i]!)
                            fields += 1
                        }
                    }
                }
                text += " " + String(report.windowEndMs) + "\n"
                lines += 1
            }
        }
        let data = Data(text.utf8)
        try handle.write(contentsOf: data)
        bytes += data.count
    }

    /// Closes the file; returns lines, field values and bytes written.
    func close() throws -> (Int, Int, Int) {
        try handle.close()
        return (lines, fields, bytes)
    }

    /// Measurements escape commas and spaces; tag keys and values also `=`.
    static func escape(_ s: String, key: Bool) -> String {
        guard s.contains(where: { $0 == "," || $0 == " " || $0 == "=" || $0 == "\\" }) else { return s }
        var out = ""
        for ch in s {
            if ch == "," || ch == " " || ch == "\\" || (key && ch == "=") { out.append("\\") }
            out.append(ch)
        }
        return out
    }
}

extension String {
    /// Right-aligned in `width` characters (longer strings as they are).
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
