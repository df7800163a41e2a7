#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import AgentCore
import Aggregation
import ArgumentParser
import FoundationEssentials
import PacketCapture
import Pseudonymisation
import TelemetryModel
import TrafficAnalysis

/// `meetpunt-agent analyze FILE`: the live capture's analysis over a capture file a technician already
/// has, timed by the packets' own timestamps, headers only, pseudonymising as the live agent does.
struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Analyse a pcap or pcapng file from packet headers only: volumes, flows, TCP RTT by leg, retransmissions.")

    @Argument(help: "A pcap or pcapng capture file.")
    var file: String

    @Flag(help: "Print JSON (per-file totals, per-client figures by pseudonym and per-TCP-stream handshake RTT; no addresses or ports).")
    var json = false

    @Option(name: .shortAndLong, help: "Agent configuration: its device secret and key epoch length (privacy.key_epoch_days) make client pseudonyms match the dashboards, and its sampling interval and capture.max_clients decide which clients go into `others`. Without it, pseudonyms are made with a key that lives only for this run.")
    var config: String?

    @Option(help: "Report window for the per-window table, seconds of capture time.")
    var windowSeconds: Int = Self.defaultWindowSeconds

    @Option(help: "Conversations tracked at once, 64-1048576 (the live agent's capture.max_flows); past it the least recently seen is evicted.")
    var maxFlows: Int = Self.defaultMaxFlows

    static let defaultWindowSeconds = 60
    static let defaultMaxFlows = 16_384

    @Flag(help: .hidden)
    var traceTcp = false

    @Flag(help: "Print on standard error how long reading and analysing took, from opening the file to the end of the analysis (`analysis_ns N`), and the CPU time of the process and of its threads (`cpu_ns`), for benchmarks.")
    var timing = false

    @Flag(help: "Do not keep the per-TCP-stream list (first frame, handshake RTT): memory then stays flat whatever the number of flows.")
    var noStreams = false

    struct StreamOutput: Codable {
        var firstFrame: Int
        var synFrame: Int?
        var handshakeRttUs: Int64?
        var packets: Int
    }

    /// One LAN client over the whole capture, by pseudonym, as the live agent reports it per interval
    /// (`traffic.client.*`): the top `capture.max_clients` of each interval by bytes, the rest as `others`.
    /// A client seen in two key epochs has two pseudonyms, as on the dashboards.
    struct ClientOutput: Codable, Equatable {
        var peer: String
        var packets: Int
        var upstreamBytes: Int
        var downstreamBytes: Int
        var lanRtt: RTTOutput?
        var wanRtt: RTTOutput?
    }

    /// RTT samples of one client's conversations on one leg, from the merged sketches (relative error 1 %).
    struct RTTOutput: Codable, Equatable {
        var samples: Int
        var p50Ms: Double
        var p95Ms: Double
    }

    struct ErrorOutput: Codable {
        var message: String
        var offset: Int?
    }

    struct Output: Codable {
        var file: String
        var linkType: String
        var snaplenReadBytes: Int
        var packets: Int
        var bytes: Int
        var capturedBytes: Int
        var skipped: [String: Int]
        var error: ErrorOutput?
        var ipv4: Int
        var ipv6: Int
        var tcp: Int
        var udp: Int
        var icmp: Int
        var other: Int
        var tcpStreams: Int
        var retransmissions: Int
        var fastRetransmissions: Int
        var outOfOrder: Int
        var zeroWindow: Int
        var rttSamples: Int
        var windows: Int
        /// Series whose samples were dropped because their window already held
        /// `IntervalFolder.maxSeriesPerWindow`, summed over the windows (0 when nothing was lost).
        var droppedSeries: Int
        var clients: [ClientOutput]
        var streams: [StreamOutput]
    }

    /// The command's options as plain values: what the analysis reads. ArgumentParser fills the command's
    /// properties; ``quickParse(_:)`` fills these directly. No defaults, so both readers name every option.
    struct Options: Equatable {
        var file: String
        var json: Bool
        var config: String?
        var windowSeconds: Int
        var maxFlows: Int
        var traceTcp: Bool
        var timing: Bool
        var noStreams: Bool
    }

    var options: Options {
        Options(file: file, json: json, config: config, windowSeconds: windowSeconds, maxFlows: maxFlows,
                traceTcp: traceTcp, timing: timing, noStreams: noStreams)
    }

    /// The usual invocations, `analyze [--json] [--timing] [--no-streams] [-c|--config FILE]
    /// [--window-seconds N] [--max-flows N] FILE` with each option at most once, read without
    /// ArgumentParser: its reflection took about 2 ms (1.2 ms for this command alone), a tenth of a small
    /// capture's analysis (the accuracy run starts `analyze` 1,440 times), and even making an
    /// `AnalyzeCommand` value costs a runtime conformance lookup (0.1 ms) for its option names. Anything
    /// else (help, `--name=value`, repeats, a value that does not parse or validate) returns nil, and
    /// ArgumentParser then reads the arguments and words any error as always. `AnalyzeQuickParseTests`
    /// holds the two readers to the same values.
    static func quickParse(_ arguments: [String]) -> Options? {
        var file: String?, config: String?, windowSeconds: Int?, maxFlows: Int?
        var seen: Set<String> = []
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("-") else {
                guard file == nil else { return nil }
                file = argument
                continue
            }
            let name = argument == "-c" ? "--config" : argument
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "--json", "--timing", "--no-streams", "--trace-tcp":
                continue
            case "--config", "--window-seconds", "--max-flows":
                guard i < arguments.endIndex, !arguments[i].hasPrefix("-") else { return nil }
                let value = arguments[i]
                i += 1
                switch name {
                case "--config": config = value
                case "--window-seconds": guard let n = Int(value) else { return nil }; windowSeconds = n
                default: guard let n = Int(value) else { return nil }; maxFlows = n
                }
            default:
                return nil
            }
        }
        guard let file else { return nil }
        let options = Options(file: file, json: seen.contains("--json"), config: config,
                              windowSeconds: windowSeconds ?? defaultWindowSeconds, maxFlows: maxFlows ?? defaultMaxFlows,
                              traceTcp: seen.contains("--trace-tcp"), timing: seen.contains("--timing"),
                              noStreams: seen.contains("--no-streams"))
        guard (try? validate(options)) != nil else { return nil }
        return options
    }

    func validate() throws { try Self.validate(options) }

    static func validate(_ options: Options) throws {
        // The range capture.max_flows accepts: the table is resident from the start.
        guard (64...1_048_576).contains(options.maxFlows) else {
            throw ValidationError("--max-flows \(options.maxFlows) is outside 64-1048576 (about 490 bytes of memory a flow)")
        }
        guard options.windowSeconds > 0 else { throw ValidationError("--window-seconds must be positive, not \(options.windowSeconds)") }
    }

    /// Runs the analysis with the options ArgumentParser read (see ``run(_:)``).
    func run() throws { try Self.run(options) }

    /// Does not return after a successful analysis: the process exits there (see its end). Not for
    /// calling in-process.
    static func run(_ options: Options) throws {
        let file = options.file, json = options.json, config = options.config
        let traceTcp = options.traceTcp, timing = options.timing, noStreams = options.noStreams
        // `analyze` opens no TLS: libcrypto, loaded on the folder's thread once the first packet is read,
        // skips openssl.cnf and the legacy name tables.
        HMACSHA256.configureForProcessWithoutTLS()
        let pseudonymiser: Pseudonymiser
        var keyNote = "pseudonyms use a key that exists only for this run"
        // The live agent's defaults; with --config, the router's own, so that its pseudonyms (which depend
        // on the key epoch) and its `others` bucket (the clients past `capture.max_clients` in a sampling
        // interval) are the ones the dashboards show.
        var epochSeconds: Int64 = 30 * 86_400, maxClients = 16, intervalSeconds: Int64 = 10
        if let config {
            let c: AgentConfiguration
            do { c = try AgentConfiguration.load(path: config) } catch { throw configurationError(error) }
            epochSeconds = Int64(c.privacy.keyEpochDays) * 86_400
            maxClients = c.capture.maxClients
            intervalSeconds = Int64(c.sampleIntervalSeconds)
            do {
                pseudonymiser = Pseudonymiser(secret: try AgentState.existingSecret(stateDirectory: c.stateDirectory, configFile: config))
                keyNote = "pseudonyms use this router's device secret"
            } catch {
                printError("meetpunt-agent analyze: \(error)")
                throw ExitCode(1)
            }
        } else {
            // The standard library's system generator: getrandom(2) on Linux, and a trap rather than a key
            // that is not random (one that would hide no one).
            var system = SystemRandomNumberGenerator()
            let random = (0..<4).flatMap { _ in withUnsafeBytes(of: system.next()) { Array($0) } }
            pseudonymiser = Pseudonymiser(secret: try DeviceSecret(bytes: random))
        }

        let started = ContinuousClock.now
        let capture: CaptureHandle
        do { capture = try CaptureHandle.openFile(file) } catch {
            if json { try emit(Output.failed(file: file, error: error)) }
            printError("meetpunt-agent analyze: cannot read \(error)")
            throw ExitCode(1)
        }
        // No idle timeout within a file (tshark has none): a conversation ends by eviction only. The flow
        // table is made resident on the folder's thread (see `TableResidency`).
        let analyzer = TrafficAnalyzer(limits: TrafficLimits(maxFlows: options.maxFlows, idleSecondsTCP: 86_400 * 365,
                                                             idleSecondsDatagram: 86_400 * 365, maxStreamRecords: noStreams ? 0 : 1 << 21),
                                       residentNow: false)
        if traceTcp { analyzer.tcpTrace = { frame, flag in printError("frame \(frame) \(flag)") } }
        let linkType = capture.linkType
        if linkType == 123 { analyzer.pseudoHeaderBytes = 4 }  // DLT_SUNATM
        let folder = IntervalFolder(windowMicroseconds: Int64(max(1, options.windowSeconds)) * 1_000_000, pseudonymiser: pseudonymiser,
                                    epochSeconds: epochSeconds, maxClients: maxClients)
        let residency = TableResidency(analyzer.flowTableResidency, tableFlows: options.maxFlows, folder: folder)
        // One sampling interval of capture time per batch, as the live agent samples every interval.
        let clock = CaptureClock(intervalMicroseconds: intervalSeconds * 1_000_000)
        // libcrypto is loaded and its HMAC first fetched on the folder's thread (after the flow table's
        // first step, before any interval) as soon as the reader has a packet, while it reads on, rather
        // than at the first pseudonym, when the analysis is in full swing or, on a short capture, on the
        // way to `finish`. A capture without packets never loads it; one with packets but no LAN client
        // loads it for nothing (about 1 ms of CPU, mostly beside the reader).
        let prepare = { folder.perform { HMACSHA256.prepare() } }
        func flush(at t: Int64) { folder.fold(analyzer.takeInterval(), at: t) }
        func handle(_ record: UnsafePointer<ParsedPacketPipeline.Record>) {
            if let due = clock.advance(to: record.pointee.meta.timestampMicroseconds) { flush(at: due) }
            residency.check(analyzer)
            if let reason = record.pointee.skip {
                analyzer.skip(record.pointee.meta, reason: reason)
            } else {
                // The headers are read where they lie in the batch.
                analyzer.process(record.pointee.meta, record.pointer(to: \.headers)!)
            }
        }
        // The file is read and parsed on a second thread while this one analyses.
        var outcome = ParsedPacketPipeline.run(read: { emit throws(CaptureError) in
            guard try capture.next({ meta, view in emit(meta, linkType, &view) }) != .end else { return }
            prepare()
            while try capture.next({ meta, view in emit(meta, linkType, &view) }) != .end {}
        }, consume: { handle($0) })
        // The reader threads' CPU time, for --timing (nil if one read on this thread).
        var readerCPU = outcome.readerCPUNanoseconds
        var failure = outcome.error
        // libpcap 1.10 refuses pcapng files whose interfaces differ in snapshot length or link type; read
        // those with the small pcapng reader instead (nothing was analysed yet).
        if let f = failure, analyzer.totals.packets == 0, PcapngFile.isPcapng(file),
           f.message.contains("snapshot length") || f.message.contains("link-layer type") {
            do {
                let fallback = try PcapngFile(path: file)
                outcome = ParsedPacketPipeline.run(read: { emit throws(CaptureError) in
                    guard try fallback.next({ meta, packetLinkType, view in emit(meta, packetLinkType, &view) }) != .end else { return }
                    prepare()
                    while try fallback.next({ meta, packetLinkType, view in emit(meta, packetLinkType, &view) }) != .end {}
                }, consume: { handle($0) })
                failure = outcome.error
                readerCPU = readerCPU.flatMap { first in outcome.readerCPUNanoseconds.map { first + $0 } }
            } catch {
                failure = error
            }
        }
        flush(at: clock.last)
        let (closed, intervals) = folder.finish()
        if timing {
            let elapsed = ContinuousClock.now - started
            printError("analysis_ns \(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)")
            printError("intervals \(intervals)")
            printError("flow_slots \(analyzer.flowSlotsInUse)")
            // CPU so far: the whole process's (from exec), this thread's (start-up and the analysis), the
            // reader's, and the rest (the interval folder's and the runtime's threads).
            // A figure that could not be measured prints as n/a.
            let process = CPUTime.nanoseconds(CLOCK_PROCESS_CPUTIME_ID), main = CPUTime.nanoseconds(CLOCK_THREAD_CPUTIME_ID)
            let other = process.flatMap { p in main.flatMap { m in readerCPU.map { p - m - $0 } } }
            func text(_ n: Int64?) -> String { n.map { "\($0)" } ?? "n/a" }
            printError("cpu_ns process \(text(process)) analysing \(text(main)) reader \(text(readerCPU)) other \(text(other))")
        }

        let totals = analyzer.totals
        let output = Output(
            file: file, linkType: PacketParser.linkTypeName(linkType), snaplenReadBytes: HeaderLimits.maximumBytes,
            packets: totals.packets, bytes: totals.bytes, capturedBytes: totals.capturedBytes,
            skipped: Dictionary(uniqueKeysWithValues: totals.skipped.map { ($0.key.rawValue, $0.value) }),
            error: failure.map { ErrorOutput(message: $0.message, offset: $0.offset) },
            ipv4: totals.ipv4, ipv6: totals.ipv6, tcp: totals.tcp, udp: totals.udp, icmp: totals.icmp, other: totals.other,
            tcpStreams: totals.tcpStreams, retransmissions: totals.retransmissions, fastRetransmissions: totals.fastRetransmissions,
            outOfOrder: totals.outOfOrder, zeroWindow: totals.zeroWindow, rttSamples: totals.rttSamples, windows: closed.count,
            droppedSeries: closed.reduce(0) { $0 + $1.droppedSeries }, clients: Self.clients(in: closed),
            streams: analyzer.streams.map { StreamOutput(firstFrame: $0.firstFrame, synFrame: $0.synFrame, handshakeRttUs: $0.handshakeMicroseconds, packets: $0.packets) })
        if json {
            try emit(output)
        } else {
            print(Self.render(output, windows: closed, keyNote: keyNote))
        }
        if let failure {
            printError("meetpunt-agent analyze: \(failure)")
            throw ExitCode(1)
        }
        // The process ends here, with standard output flushed, rather than on the way out of `run`,
        // where the flow table, the stream list and the folder's windows were freed one by one: 0.6 ms
        // of a 25 ms run over input B (docs/benchmarks.md, "Start-up"). Nothing else needs closing: the
        // reader thread was joined and the folder finished.
        Glibc.exit(0)
    }

    /// Makes `analyze`'s flow table resident on the folder's thread in two steps: the slots of its first
    /// 2 MiB huge page (4,297 of 488 bytes) at start, while the first packets are read and that thread is
    /// idle, and the rest once the capture's conversations have used all of those. A capture of a few
    /// thousand conversations (input B of the benchmark: 2,205) then clears 2 MiB of table instead of 8
    /// (about 1.5 ms of CPU here), and a larger one gets the whole table, as the live agent does at start:
    /// its memory is the same for ten thousand flows as for a million. The analyser may reach a page first
    /// and fault it in itself; populating never changes a byte. A capture that passes the first page only
    /// near its end waits at `IntervalFolder.finish` for the rest to be populated (up to 6 MB cleared,
    /// about 1.5 ms here).
    final class TableResidency {
        /// The slots in the table's first huge page (the table is aligned to one).
        static let flowsAtStart = HugePageMemory.hugePageBytes / TrafficAnalyzer.bytesPerFlow
        private let residency: FlowTableResidency?
        private let folder: IntervalFolder
        private var whole: Bool

        init(_ residency: FlowTableResidency?, tableFlows: Int, folder: IntervalFolder) {
            self.residency = residency
            self.folder = folder
            whole = residency == nil || tableFlows <= Self.flowsAtStart
            if let residency { folder.perform { residency.populate(flows: Self.flowsAtStart) } }
        }

        /// Asks for the rest of the table once the first slots are all in use (per packet: one comparison).
        @inline(__always) func check(_ analyzer: TrafficAnalyzer) {
            guard !whole, analyzer.flowSlotsInUse >= Self.flowsAtStart, let residency else { return }
            whole = true
            folder.perform { residency.populate() }
        }
    }

    /// Interval boundaries in a capture's own time: one flush per elapsed interval, but a clock jump in
    /// the file (malformed captures hold timestamps decades apart) costs one flush, not one per skipped
    /// interval. A class so the per-packet closure reaches it without a boxed-variable access check.
    final class CaptureClock {
        let interval: Int64
        private var next: Int64?
        private(set) var last: Int64 = 0
        init(intervalMicroseconds: Int64) { interval = intervalMicroseconds }

        /// The boundary passed by a packet at `t`, if one was.
        @inline(__always) func advance(to t: Int64) -> Int64? {
            last = t
            guard let n = next else { next = t + interval; return nil }
            guard t >= n else { return nil }
            next = t - n >= interval ? n + ((t - n) / interval + 1) * interval : n + interval
            return n
        }
    }

    static func emit(_ output: Output) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(output), as: UTF8.self))
    }

    /// The readable summary, line by line into one string: `[String].joined(separator:)` is not
    /// specialised for `[String]` and looks a conformance up at run time (0.07 ms at the end of every run).
    static func render(_ o: Output, windows: [WindowedAggregation.Window], keyNote: String) -> String {
        var text = ""
        func line(_ s: String) {
            if !text.isEmpty { text += "\n" }
            text += s
        }
        line("\(o.file): \(o.linkType), \(o.packets) packets, \(o.bytes) bytes on the wire (headers only were read; at most \(o.snaplenReadBytes) bytes per packet)")
        line("  IPv4 \(o.ipv4), IPv6 \(o.ipv6); TCP \(o.tcp), UDP \(o.udp), ICMP \(o.icmp), other \(o.other)")
        if !o.skipped.isEmpty {
            var reasons = "  not analysed: "
            for (i, (reason, n)) in o.skipped.sorted(by: { $0.key < $1.key }).enumerated() {
                reasons += "\(i == 0 ? "" : ", ")\(n) \(String(reason.map { $0 == "_" ? " " : $0 }))"
            }
            line(reasons)
        }
        line("  TCP: \(o.tcpStreams) streams, \(o.retransmissions) retransmissions (\(o.fastRetransmissions) fast), \(o.outOfOrder) out of order, \(o.zeroWindow) zero-window")
        let handshakes = o.streams.compactMap(\.handshakeRttUs).sorted()
        if !handshakes.isEmpty {
            func q(_ p: Double) -> String { SampleCommand.fixed(Double(handshakes[min(handshakes.count - 1, Int(p * Double(handshakes.count)))]) / 1000, 2) }
            line("  handshake RTT over \(handshakes.count) streams: p50 \(q(0.5)) ms, p90 \(q(0.9)) ms, max \(q(1)) ms")
        }
        line("  \(windows.count) window(s); \(keyNote)")
        if o.droppedSeries > 0 {
            line("  \(o.droppedSeries) series dropped: a window holds at most \(IntervalFolder.maxSeriesPerWindow); a shorter --window-seconds keeps them")
        }
        for w in windows.prefix(24) {
            func sum(_ m: String) -> Double { w.series.filter { $0.metric == m }.reduce(0) { $0 + $1.sum } }
            var window = "    window +\(SampleCommand.fixed(Double(w.startMicroseconds - (windows.first?.startMicroseconds ?? 0)) / 1e6, 0)) s: \(Int(sum("traffic.packets"))) packets, \(Int(sum("traffic.bytes"))) bytes"
            // Packets counted but not analysed (not IP, malformed): a window of only those reads as empty otherwise.
            let skipped = Int(sum("traffic.skipped_packets"))
            if skipped > 0 { window += ", \(skipped) not analysed" }
            for leg in ["lan", "wan"] {
                let rtts = w.series.filter { $0.metric == "traffic.tcp.rtt" && $0.labels["leg"] == leg }
                var sketch = QuantileSketch()
                for r in rtts { if let s = r.sketch { try? sketch.merge(s) } }
                if let p50 = sketch.quantile(0.5), let p95 = sketch.quantile(0.95) {
                    window += ", \(leg.uppercased()) RTT p50 \(SampleCommand.fixed(p50, 2)) / p95 \(SampleCommand.fixed(p95, 2)) ms"
                }
            }
            // Named clients; `others` (many clients in one series) is said as such, not counted as one.
            let peers = Set(w.series.filter { $0.metric == "traffic.client.bytes" }.compactMap { $0.labels["peer"] })
            let named = peers.subtracting([Self.othersPeer]).count
            if !peers.isEmpty { window += ", \(named) client(s)" + (peers.contains(Self.othersPeer) ? " and others" : "") }
            if w.droppedSeries > 0 { window += ", \(w.droppedSeries) series dropped" }
            line(window)
        }
        if windows.count > 24 { line("    … \(windows.count - 24) more") }
        if !o.clients.isEmpty {
            // The named clients with the most bytes, then `others` (always last in `clients`) whatever its size.
            let named = o.clients.filter { $0.peer != Self.othersPeer }
            let shown = Array(named.prefix(Self.clientsShown)) + o.clients.filter { $0.peer == Self.othersPeer }
            let cut = named.count > Self.clientsShown ? " (top \(Self.clientsShown) of \(named.count) pseudonyms)" : ""
            line("  clients by pseudonym, by bytes\(cut):")
            for c in shown {
                var client = "    \(c.peer): \(c.packets) packets, \(c.upstreamBytes) bytes up, \(c.downstreamBytes) bytes down"
                for (leg, rtt) in [("LAN", c.lanRtt), ("WAN", c.wanRtt)] {
                    if let rtt { client += ", \(leg) RTT p50 \(SampleCommand.fixed(rtt.p50Ms, 2)) / p95 \(SampleCommand.fixed(rtt.p95Ms, 2)) ms (\(rtt.samples))" }
                }
                line(client)
            }
        }
        if let e = o.error { line("  stopped early: \(e.message)" + (e.offset.map { " at byte offset \($0)" } ?? "")) }
        return text
    }
}

extension AnalyzeCommand {
    /// Named client rows the readable summary prints, before `others` (`--json` has them all).
    static let clientsShown = 10
    /// The `peer` label of the clients past each interval's top `capture.max_clients`.
    static let othersPeer = PeerLabel.others

    /// The capture's clients from the windows' `traffic.client.*` series, summed by pseudonym over all
    /// windows: most bytes first, `others` (the clients past each interval's top N) last. A client seen in
    /// two key epochs has a row for each of its pseudonyms.
    static func clients(in windows: [WindowedAggregation.Window]) -> [ClientOutput] {
        struct Sum {
            var packets = 0.0, up = 0.0, down = 0.0
            var lan = QuantileSketch(), wan = QuantileSketch()
        }
        var sums: [String: Sum] = [:]
        for w in windows {
            for s in w.series {
                guard let peer = s.labels["peer"] else { continue }
                switch s.metric {
                case "traffic.client.packets": sums[peer, default: Sum()].packets += s.sum
                case "traffic.client.bytes":
                    // Sent by the client (to the internet or within the LAN), and received from the internet.
                    switch s.labels["direction"] {
                    case "upstream": sums[peer, default: Sum()].up += s.sum
                    case "downstream": sums[peer, default: Sum()].down += s.sum
                    default: continue
                    }
                case "traffic.client.rtt":
                    guard let sketch = s.sketch else { continue }
                    // Every sketch has the default accuracy (the catalogue's), so a merge cannot fail.
                    switch s.labels["leg"] {
                    case "lan": try? sums[peer, default: Sum()].lan.merge(sketch)
                    case "wan": try? sums[peer, default: Sum()].wan.merge(sketch)
                    default: continue
                    }
                default: continue
                }
            }
        }
        func rtt(_ sketch: QuantileSketch) -> RTTOutput? {
            guard sketch.count > 0, let p50 = sketch.quantile(0.5), let p95 = sketch.quantile(0.95) else { return nil }
            // To the microsecond: the sketch's own error is 1 %.
            func ms(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
            return RTTOutput(samples: Int(sketch.count), p50Ms: ms(p50), p95Ms: ms(p95))
        }
        let rows = sums.map { peer, sum in
            ClientOutput(peer: peer, packets: Int(sum.packets), upstreamBytes: Int(sum.up), downstreamBytes: Int(sum.down),
                         lanRtt: rtt(sum.lan), wanRtt: rtt(sum.wan))
        }
        return rows.sorted { a, b in
            if (a.peer == othersPeer) != (b.peer == othersPeer) { return b.peer == othersPeer }
            let bytesA = a.upstreamBytes + a.downstreamBytes, bytesB = b.upstreamBytes + b.downstreamBytes
            return bytesA != bytesB ? bytesA > bytesB : a.peer < b.peer
        }
    }
}

extension AnalyzeCommand.Output {
    static func failed(file: String, error: CaptureError) -> Self {
        .init(file: file, linkType: "unknown", snaplenReadBytes: HeaderLimits.maximumBytes, packets: 0, bytes: 0, capturedBytes: 0, skipped: [:],
              error: .init(message: error.message, offset: error.offset), ipv4: 0, ipv6: 0, tcp: 0, udp: 0, icmp: 0, other: 0, tcpStreams: 0,
              retransmissions: 0, fastRetransmissions: 0, outOfOrder: 0, zeroWindow: 0, rttSamples: 0, windows: 0, droppedSeries: 0, clients: [], streams: [])
    }
}
