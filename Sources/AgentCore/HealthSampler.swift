#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import TelemetryModel

/// The router's own health, the first suspect in a support call: CPU busy share, memory, load,
/// conntrack fill and temperatures, from /proc and /sys. Files that do not exist (no conntrack module,
/// no thermal zones) are skipped, not errors.
public final class HealthSampler: Sampler {
    public let name = "health"
    private let procRoot: String
    private let sysRoot: String
    /// The CPU counters the next share is computed from, and when they were read.
    private var previousCPU: (busy: UInt64, total: UInt64, at: UInt64)?
    /// Thermal zones read at most, so a board with hundreds of sensors cannot blow the series budget.
    private let maxZones = 16

    public init(config: AgentConfiguration.Health) {
        procRoot = config.procRoot
        sysRoot = config.sysRoot
    }

    public func sample(_ context: SampleContext, into batch: inout SampleBatch) throws {
        let reading = read()
        if let cpu = reading.cpu {
            let now = context.time.monotonicNanoseconds
            if let before = previousCPU, cpu.total >= before.total, cpu.busy >= before.busy {
                // Too soon for a share: the counters stay the baseline, so the next reading spans more.
                if Double(now &- before.at) / 1e9 >= SampleContext.minimumRateSeconds {
                    if cpu.total > before.total {
                        batch.add("system.cpu_busy", [:], Double(cpu.busy - before.busy) / Double(cpu.total - before.total))
                    }
                    previousCPU = (cpu.busy, cpu.total, now)
                }
            } else {
                previousCPU = (cpu.busy, cpu.total, now)
            }
        }
        if let v = reading.memoryAvailableBytes { batch.add("system.memory_available", [:], Double(v)) }
        if let v = reading.memoryTotalBytes { batch.add("system.memory_total", [:], Double(v)) }
        if let v = reading.load1 { batch.add("system.load1", [:], v) }
        if let v = reading.conntrackEntries { batch.add("system.conntrack_entries", [:], Double(v)) }
        if let v = reading.conntrackMax { batch.add("system.conntrack_max", [:], Double(v)) }
        for (zone, celsius) in reading.temperatures { batch.add("system.temperature", ["zone": zone], celsius) }
    }

    /// One reading of every source; `sample --once` prints it.
    public func read() -> HealthReading {
        var r = HealthReading()
        if let stat = Self.readSmallFile("\(procRoot)/stat"), let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") {
            // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
            let fields = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
            if fields.count >= 5 {
                let total = fields.reduce(0, &+)
                let idle = fields[3] &+ fields[4]
                r.cpu = (total &- idle, total)
            }
        }
        if let mem = Self.readSmallFile("\(procRoot)/meminfo") {
            for line in mem.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                guard parts.count >= 2, let kib = UInt64(parts[1]) else { continue }
                if parts[0] == "MemAvailable:" { r.memoryAvailableBytes = kib * 1024 }
                if parts[0] == "MemTotal:" { r.memoryTotalBytes = kib * 1024 }
            }
        }
        if let load = Self.readSmallFile("\(procRoot)/loadavg")?.split(separator: " ").first { r.load1 = Double(load) }
        r.conntrackEntries = Self.readSmallFile("\(procRoot)/sys/net/netfilter/nf_conntrack_count").flatMap { UInt64(Self.trimmed($0)) }
        r.conntrackMax = Self.readSmallFile("\(procRoot)/sys/net/netfilter/nf_conntrack_max").flatMap { UInt64(Self.trimmed($0)) }
        var seen: [String: Int] = [:]
        for i in 0..<64 where r.temperatures.count < maxZones {
            let base = "\(sysRoot)/class/thermal/thermal_zone\(i)"
            guard let raw = Self.readSmallFile("\(base)/temp"), let milli = Int64(Self.trimmed(raw)) else {
                if access(base, F_OK) != 0 { break }
                continue
            }
            var zone = Self.zoneToken(Self.readSmallFile("\(base)/type").map(Self.trimmed) ?? "zone")
            seen[zone, default: 0] += 1
            if seen[zone]! > 1 { zone = String(zone.prefix(20)) + "-\(i)" }
            r.temperatures.append((zone, Double(milli) / 1000))
        }
        return r
    }

    /// A thermal zone's type as a label: 1–24 of letters, digits, `.`, `-`, `_`.
    static func zoneToken(_ type: String) -> String {
        let cleaned = String(type.unicodeScalars.map { s -> Character in
            let v = s.value
            let ok = (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x2E || v == 0x2D || v == 0x5F
            return ok ? Character(s) : "_"
        }.prefix(24))
        return cleaned.isEmpty ? "zone" : cleaned
    }

    static func trimmed(_ s: String) -> String {
        String(s.unicodeScalars.filter { !$0.properties.isWhitespace }.map(Character.init))
    }

    /// Reads a /proc or /sys file of at most 64 KiB; nil when it is missing or unreadable.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var used = 0
        while used < buffer.count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + used, $0.count - used) }
            if n <= 0 { break }
            used += n
        }
        return String(decoding: buffer[..<used], as: UTF8.self)
    }
}

public struct HealthReading: Sendable {
    public var cpu: (busy: UInt64, total: UInt64)?
    public var memoryAvailableBytes: UInt64?
    public var memoryTotalBytes: UInt64?
    public var load1: Double?
    public var conntrackEntries: UInt64?
    public var conntrackMax: UInt64?
    public var temperatures: [(zone: String, celsius: Double)] = []
}
