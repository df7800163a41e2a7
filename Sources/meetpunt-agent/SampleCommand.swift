#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import AgentCore
import ArgumentParser
import FoundationEssentials
import NetlinkKit
import Pseudonymisation

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// `meetpunt-agent sample --once`: what the agent sees right now, for a technician on the router.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Print what the agent sees now: ports, radios, Wi-Fi clients by pseudonym, neighbours per channel, router health.")

    @OptionGroup var options: ConfigOption

    @Flag(help: "Take one sample and exit (the only mode; kept explicit for scripts).")
    var once = false

    @Flag(help: "Print JSON (snake_case keys; absent fields were not reported by the kernel).")
    var json = false

    struct Port: Codable {
        var name: String
        var operUp: Bool
        var carrier: Bool
        var speedMbps: UInt32?
        var fullDuplex: Bool?
        var mtu: UInt32
        var rxBytes: UInt64
        var txBytes: UInt64
        var rxPackets: UInt64
        var txPackets: UInt64
        var rxErrors: UInt64
        var txErrors: UInt64
    }

    struct Health: Codable {
        var cpuBusy: Double?
        var memoryAvailableBytes: UInt64?
        var memoryTotalBytes: UInt64?
        var load1: Double?
        var conntrackEntries: UInt64?
        var conntrackMax: UInt64?
        var temperaturesCelsius: [String: Double]
    }

    struct Output: Codable {
        var wifi: WifiObservation
        var links: [Port]
        var health: Health
    }

    func run() throws {
        let config = try options.load()
        let secret: DeviceSecret
        do { secret = try AgentState.existingSecret(stateDirectory: config.stateDirectory, configFile: options.config) } catch {
            printError("meetpunt-agent sample: \(error)")
            throw ExitCode(1)
        }
        let pseudonymiser = Pseudonymiser(secret: secret)
        let now = SampleTime.now()
        let epoch = KeyEpoch.containing(unixSeconds: now.wallMilliseconds / 1000, lengthSeconds: Int64(config.privacy.keyEpochDays) * 86_400)

        let wifi: WifiObservation
        do {
            wifi = try WifiSampler(config: config.wifi, pseudonymiser: pseudonymiser).observe(epoch: epoch)
        } catch {
            printError("meetpunt-agent sample: reading nl80211 failed: \(error)")
            throw ExitCode(1)
        }
        let ports = try readPorts(config)
        let health = readHealth(config)
        let output = Output(wifi: wifi, links: ports, health: health)
        if json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try encoder.encode(output), as: UTF8.self))
        } else {
            print(Self.render(output))
        }
    }

    func readPorts(_ config: AgentConfiguration) throws -> [Port] {
        let ethtool = EthtoolLinkModes()
        return try LinkStatsReader().snapshot().filter { config.link.samples($0.name, isLoopback: $0.isLoopback) }.map { l in
            let modes = ethtool.linkModes(of: l.name)
            return Port(name: LinkSampler.label(for: l), operUp: l.isOperUp, carrier: l.carrier, speedMbps: modes.speedMbps,
                        fullDuplex: modes.fullDuplex, mtu: l.mtu, rxBytes: l.counters.rxBytes, txBytes: l.counters.txBytes,
                        rxPackets: l.counters.rxPackets, txPackets: l.counters.txPackets, rxErrors: l.counters.rxErrors,
                        txErrors: l.counters.txErrors)
        }
    }

    func readHealth(_ config: AgentConfiguration) -> Health {
        let sampler = HealthSampler(config: config.health)
        let first = sampler.read()
        usleep(250_000)  // CPU busy needs two readings
        let second = sampler.read()
        var busy: Double?
        if let a = first.cpu, let b = second.cpu, b.total > a.total, b.busy >= a.busy {
            busy = Double(b.busy - a.busy) / Double(b.total - a.total)
        }
        return Health(cpuBusy: busy, memoryAvailableBytes: second.memoryAvailableBytes, memoryTotalBytes: second.memoryTotalBytes,
                      load1: second.load1, conntrackEntries: second.conntrackEntries, conntrackMax: second.conntrackMax,
                      temperaturesCelsius: Dictionary(second.temperatures.map { ($0.zone, $0.celsius) }) { a, _ in a })
    }

    // MARK: Tables

    static func render(_ o: Output) -> String {
        var out: [String] = []
        out.append("PORTS")
        out += table(["name", "state", "speed", "mtu", "rx bytes", "tx bytes", "rx err", "tx err"], o.links.map { p in
            [p.name, p.operUp ? "up" : "down", p.speedMbps.map { "\($0) Mb/s" + (p.fullDuplex == false ? " half" : "") } ?? "unknown",
             "\(p.mtu)", "\(p.rxBytes)", "\(p.txBytes)", "\(p.rxErrors)", "\(p.txErrors)"]
        })
        out.append("")
        out.append("RADIOS" + (o.wifi.regulatoryCountry.map { "  (regulatory country \($0))" } ?? ""))
        if o.wifi.status != .ok {
            out.append("  \(o.wifi.message ?? o.wifi.status.rawValue)")
        } else {
            out += table(["radio", "mode", "band", "channel", "width", "tx power", "noise", "ssid", "stations"], o.wifi.interfaces.map { r in
                [r.name, r.type, r.band + " GHz", r.channel.map { "\($0) (\(r.frequencyMhz ?? 0) MHz)" } ?? "-", r.channelWidth.map { "\($0) MHz" } ?? "-",
                 r.txPowerDbm.map { fixed($0, 2) + " dBm" } ?? "-",
                 r.noiseDbm.map { "\($0) dBm" + (r.noisePlausible ? "" : " (implausible)") } ?? (r.surveySupported ? "none" : "no survey"),
                 r.ssid ?? "-", "\(r.stations.count)"]
            })
            for r in o.wifi.interfaces where !r.noisePlausible {
                out.append("  \(r.name): SNR not computed: \(r.noiseProblem ?? "noise unusable")")
            }
            out.append("")
            out.append("CLIENTS")
            var rows: [[String]] = []
            for r in o.wifi.interfaces {
                for s in r.stations {
                    rows.append([r.name, s.client, s.signalDbm.map { "\($0) dBm" } ?? "-", s.snrDb.map { "\($0) dB" } ?? "-",
                                 s.txBitrate.map(rate) ?? "-", s.rxBitrate.map(rate) ?? "-",
                                 "\(s.txRetries.map(String.init) ?? "-")/\(s.txFailed.map(String.init) ?? "-")",
                                 s.inactiveMs.map { "\($0) ms" } ?? "-", s.connectedS.map { "\($0) s" } ?? "-"])
                }
            }
            out += rows.isEmpty ? ["  no stations"] : table(["radio", "peer", "signal", "snr", "tx rate", "rx rate", "retries/failed", "inactive", "connected"], rows)
            out.append("")
            out.append("NEIGHBOURS (cached scan results)")
            var n: [[String]] = []
            for r in o.wifi.interfaces {
                for c in r.neighbours {
                    let s = c.signalDbm
                    n.append([r.name, c.channel.map(String.init) ?? "?", "\(c.frequencyMhz) MHz", "\(c.bssCount)",
                              s.isEmpty ? "-" : "\(fixed(s.first!, 0))…\(fixed(s.last!, 0)) dBm"])
                }
            }
            out += n.isEmpty ? ["  none in the scan cache"] : table(["radio", "channel", "frequency", "networks", "signal"], n)
        }
        out.append("")
        out.append("HEALTH")
        let h = o.health
        out.append("  cpu busy \(h.cpuBusy.map { fixed($0 * 100, 1) + " %" } ?? "-")"
                   + ", memory available \(h.memoryAvailableBytes.map { mib($0) } ?? "-") of \(h.memoryTotalBytes.map { mib($0) } ?? "-")"
                   + ", load \(h.load1.map { fixed($0, 2) } ?? "-")"
                   + ", conntrack \(h.conntrackEntries.map(String.init) ?? "-")/\(h.conntrackMax.map(String.init) ?? "-")")
        for (zone, c) in h.temperaturesCelsius.sorted(by: { $0.key < $1.key }) { out.append("  \(zone): \(fixed(c, 1)) °C") }
        return out.joined(separator: "\n")
    }

    static func rate(_ r: WifiObservation.Rate) -> String {
        var s = r.bitrateKbps.map { fixed(Double($0) / 1000, 1) + " Mb/s" } ?? "?"
        switch r.phy {
        case "ht": s += " HT-MCS \(r.mcs ?? 0)"
        case "vht": s += " VHT-MCS \(r.vhtMcs ?? 0) NSS \(r.nss ?? 0)"
        case "he": s += " HE-MCS \(r.heMcs ?? 0) NSS \(r.nss ?? 0)"
        case "eht": s += " EHT-MCS \(r.ehtMcs ?? 0) NSS \(r.nss ?? 0)"
        default: break
        }
        if r.widthMhz != 20 { s += " \(r.widthMhz) MHz" }
        if r.shortGi { s += " SGI" }
        return s
    }

    static func mib(_ bytes: UInt64) -> String { fixed(Double(bytes) / 1_048_576, 0) + " MiB" }

    static func fixed(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        if digits == 0 { return String(Int(r)) }
        var text = String(r)
        let parts = text.split(separator: ".")
        let decimals = parts.count > 1 ? parts[1].count : 0
        if decimals == 0 { text += "." }
        return text + String(repeating: "0", count: max(0, digits - decimals))
    }

    static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        var widths = header.map(\.count)
        for row in rows { for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            "  " + cells.enumerated().map { i, c in c + String(repeating: " ", count: widths[i] - c.count) }.joined(separator: "  ")
        }
        return [line(header)] + rows.map(line)
    }
}
