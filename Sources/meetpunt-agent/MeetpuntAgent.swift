#if canImport(Glibc)
import Glibc
#endif
import AgentConfig
import AgentCore
import ArgumentParser
import Logging
import NetlinkKit
import Pseudonymisation
import ServiceLifecycle

@main
struct MeetpuntAgent: AsyncParsableCommand {
    static let version = "0.4.0"
    static let configuration = CommandConfiguration(
        commandName: "meetpunt-agent",
        abstract: "Meetpunt's on-router telemetry agent: samples links, LAN clients, Wi-Fi and router health, pseudonymises identifiers, ships aggregates.",
        version: version,
        subcommands: [Run.self, SampleCommand.self, AnalyzeCommand.self, CheckConfig.self, PseudonymCommand.self],
        defaultSubcommand: Run.self)

    /// `analyze` with the usual arguments starts without ArgumentParser's reflection over the command
    /// tree (about 2 ms, a tenth of `analyze`'s run over a small capture); help requests and anything
    /// unusual take the usual path, so their output is the same (``AnalyzeCommand/quickParse(_:)``).
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == AnalyzeCommand.configuration.commandName,
           let options = AnalyzeCommand.quickParse(Array(arguments.dropFirst())) {
            do { try AnalyzeCommand.run(options) } catch { exit(withError: error) }
            return
        }
        await main(nil)
    }
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "Agent configuration file.")
    var config: String = "/etc/meetpunt/agent.yaml"

    func load() throws -> AgentConfiguration {
        do { return try AgentConfiguration.load(path: config) } catch { throw configurationError(error) }
    }
}

/// A configuration that cannot be used: its error on one line (it names the file, and the line and key
/// where there is one) and exit status 64, which the systemd unit does not restart on. Not a
/// `ValidationError`: ArgumentParser would add the root command's usage, as if the arguments were wrong.
func configurationError(_ error: any Error) -> ExitCode {
    printError("meetpunt-agent: \(error)")
    return ExitCode(64)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample and ship until SIGTERM/SIGINT or --duration.")

    @OptionGroup var options: ConfigOption

    @Option(help: "Stop gracefully after this many seconds (ships the partial window first).")
    var duration: Int?

    func run() async throws {
        // Blocking work runs on short-lived threads (BlockingCall); glibc would give each its own malloc
        // arena, which keeps what it freed. Two arenas keep a router agent's anonymous memory flat.
        _ = glibcMallopt(-8 /* M_ARENA_MAX, malloc.h */, 2)
        let config = try options.load()
        let level = Logger.Level(rawValue: config.logLevel) ?? .info
        let ssids = config.privacy.guardSSIDs
        LoggingSystem.bootstrap { label in
            var handler = RedactingLogHandler(wrapping: StreamLogHandler.standardError(label: label), guardSSIDs: ssids)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "meetpunt.agent")

        let state = try AgentState(directory: config.stateDirectory)
        let secret = try DeviceSecret.loadOrCreate(at: state.secretPath)
        // libcrypto is opened at its first use: without it the agent stops here with the reason, not at
        // the first pseudonym on a sampler's thread.
        try HMACSHA256.load()
        let token = try AgentState.readToken(config.collector.tokenFile)
        let pseudonymiser = Pseudonymiser(secret: secret)
        if !AgentState.isPrivate(config.collector.tokenFile) {
            logger.warning("token file is readable by group or others; run chmod 600 on it",
                           metadata: ["file": "\(config.collector.tokenFile)"])
        }

        var samplers: [any Sampler] = []
        if config.link.enabled { samplers.append(try LinkSampler(config: config.link)) }
        if config.lanClients.enabled {
            samplers.append(try LANClientSampler(config: config.lanClients, reportOUI: config.privacy.reportOUI, pseudonymiser: pseudonymiser))
        }
        if config.wifi.enabled {
            samplers.append(try WifiSampler(config: config.wifi, pseudonymiser: pseudonymiser, logger: logger))
        }
        if config.health.enabled { samplers.append(HealthSampler(config: config.health)) }
        var pushers: [any PushingSense] = []
        if config.capture.enabled {
            do {
                pushers.append(try CaptureSampler(config: config.capture, pseudonymiser: pseudonymiser, logger: logger))
            } catch {
                // One clear line and a non-zero exit: a capture that cannot start must not look alive.
                logger.critical("capture cannot start; fix capture.* in the configuration", metadata: ["error": "\(error)"])
                throw ExitCode(2)
            }
        }
        let transport: CurlTransport
        do {
            transport = try CurlTransport(baseURL: config.collector.url, token: token, timeoutSeconds: config.collector.requestTimeoutSeconds,
                                          caFile: config.collector.caFile, pinnedPublicKey: config.collector.pinnedPublicKey)
        } catch {
            logger.critical("cannot ship reports", metadata: ["error": "\(error.message)"])
            throw ExitCode(2)
        }
        if config.collector.insecureDemo, config.collector.url.hasPrefix("http://") {
            logger.warning("collector.insecure_demo: the device token travels in clear over http://; never outside a demo on one host")
        }
        let spool = try DiskSpool(stateDirectory: config.stateDirectory, configuration: config.spool)
        let r = spool.recovery
        logger.info("spool opened", metadata: ["spool.reports": "\(r.reports)", "spool.last_seq": "\(r.lastSeq)", "spool.bytes": "\(r.bytes)",
                                               "spool.torn_records": "\(r.tornRecords)", "spool.corrupt_segments": "\(r.corruptSegments)"])
        if r.corruptSegments > 0 {
            logger.error("spool segments held unreadable records; the rest of each was skipped", metadata: ["spool.corrupt_segments": "\(r.corruptSegments)"])
        }
        let assembler = ReportAssembler(deviceID: config.deviceID, agentVersion: MeetpuntAgent.version,
                                        outgoingGuard: OutgoingGuard(guardSSIDs: ssids))
        let samplerSet = SamplerSet(samplers)
        let settings = RuntimeSettings(configuration: config, available: Set(samplerSet.names))
        let checkIn = ConfigCheckIn(transport: transport, settings: settings, stateDirectory: config.stateDirectory, logger: logger)
        checkIn.restore()
        let pipeline = AgentPipeline(configuration: config, samplers: samplerSet, pushers: pushers, spool: spool,
                                     assembler: assembler, settings: settings, logger: logger)
        let floor = config.clock.wallClockFloorMilliseconds
        let shipper = Shipper(spool: spool, transport: transport, shipping: config.shipping, wallClock: {
            let now = SampleTime.now().wallMilliseconds
            return now >= floor ? now : nil
        }, onConfigVersion: { await checkIn.desired(version: $0) }, logger: logger)

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: shipper), .init(service: pipeline)]
        if config.collector.sessionPollSeconds > 0 {
            // Its own transport: a long poll outlasts the request timeout reports are sent with.
            let poll = try CurlTransport(baseURL: config.collector.url, token: token, timeoutSeconds: config.collector.sessionPollSeconds + 15,
                                         caFile: config.collector.caFile, pinnedPublicKey: config.collector.pinnedPublicKey)
            services.append(.init(service: SessionCheckIn(transport: poll, settings: settings, waitSeconds: config.collector.sessionPollSeconds, logger: logger)))
        }
        if let duration {
            services.append(.init(service: StopAfter(duration: .seconds(duration)), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        var groupConfig = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfig.maximumGracefulShutdownDuration = .seconds(30)
        logger.info("agent starting", metadata: ["device": "\(config.deviceID)", "collector": "\(config.collector.url)",
                                                 "version": "\(MeetpuntAgent.version)", "http": "\(CurlTransport.libraryVersion)"])
        try await ServiceGroup(configuration: groupConfig).run()
        logger.info("agent stopped")
    }
}

/// glibc's mallopt(3): malloc.h is not part of Swift's Glibc module, and this one call does not justify a
/// C module of its own.
@_silgen_name("mallopt")
func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// Returns after `duration` (or at graceful shutdown), which shuts the group down gracefully.
struct StopAfter: Service {
    let duration: Duration
    func run() async throws {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config",
                                                    abstract: "Validate a configuration file and exit (0 when valid).")

    @Argument(help: "The configuration file to check.")
    var file: String

    func run() throws {
        do {
            let c = try AgentConfiguration.load(path: file)
            print("\(file): valid (device \(c.deviceID), interval \(c.sampleIntervalSeconds) s, window \(c.reportWindowSeconds) s)")
        } catch {
            print("\(error)")
            throw ExitCode(2)
        }
    }
}

struct PseudonymCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pseudonym",
        abstract: "Print the current pseudonym of a MAC address or SSID, to find a customer's device in a dashboard.")

    @OptionGroup var options: ConfigOption

    @Argument(help: "A MAC address in any common spelling (aa:bb:cc:dd:ee:ff, AA-BB-…, aabb.ccdd.eeff).")
    var mac: String?

    @Option(help: "An SSID instead of a MAC address.")
    var ssid: String?

    @Option(help: "What the MAC address is: client, bssid or neighbour.")
    var kind: String = "client"

    @Option(help: "Unix time to compute the pseudonym for (default: now).")
    var at: Int64?

    func validate() throws {
        guard (mac == nil) != (ssid == nil) else { throw ValidationError("give either a MAC address or --ssid NAME") }
        guard ["client", "bssid", "neighbour"].contains(kind) else { throw ValidationError("--kind must be client, bssid or neighbour") }
    }

    func run() throws {
        let config = try options.load()
        let secret: DeviceSecret
        do { secret = try AgentState.existingSecret(stateDirectory: config.stateDirectory, configFile: options.config) } catch {
            printError("meetpunt-agent pseudonym: \(error)")
            throw ExitCode(1)
        }
        let p = Pseudonymiser(secret: secret)
        let now = at ?? (SampleTime.now().wallMilliseconds / 1000)
        let epoch = KeyEpoch.containing(unixSeconds: now, lengthSeconds: Int64(config.privacy.keyEpochDays) * 86_400)
        if let ssid {
            print("\(p.pseudonym(ofSSID: ssid, epoch: epoch))  epoch \(epoch)")
        } else if let mac {
            guard let address = MACAddress(parsing: mac) else { throw ValidationError("not a MAC address (expected 12 hex digits)") }
            let k: PseudonymKind = kind == "bssid" ? .bssid : kind == "neighbour" ? .neighbourBSSID : .clientMAC
            print("\(p.pseudonym(of: address, kind: k, epoch: epoch))  epoch \(epoch)")
        }
    }
}
