import AgentConfig
import CollectorCore
import Foundation
import Testing

@Suite struct AgentConfigurationTests {
    static let minimal = """
        device_id: dev-1
        collector:
          url: https://collector.example.net
          token_file: /tmp/token
        """

    @Test func shippedAgentConfigIsValid() throws {
        let path = TestSupport.repositoryRoot.appendingPathComponent("agent-config/agent.yaml").path
        let c = try AgentConfiguration.load(path: path)
        #expect(c.sampleIntervalSeconds == 10)
        #expect(c.reportWindowSeconds == 60)
        #expect(c.link.samples("eth0", isLoopback: false))
        #expect(!c.link.samples("lo", isLoopback: true), "loopback is excluded by default")
    }

    @Test func defaultsApplyToAMinimalFile() throws {
        let c = try AgentConfiguration.parse(Self.minimal, file: "agent.yaml")
        #expect(c.sampleIntervalSeconds == 10 && c.reportWindowSeconds == 60)
        #expect(c.privacy.keyEpochDays == 30 && c.privacy.reportOUI)
        #expect(c.spool == .init(maxBytes: 8 << 20, maxAgeHours: 168, fsync: .always))
        #expect(c.clock.wallClockFloorMilliseconds == AgentConfiguration.Clock.defaultFloorMilliseconds)
        #expect(!c.collector.insecureDemo)
    }

    @Test func plainHTTPIsAllowedOnlyAsADemo() throws {
        let http = "device_id: d\ncollector:\n  url: http://127.0.0.1:8080\n  token_file: /t\n"
        #expect(throws: ConfigError.self) { try AgentConfiguration.parse(http, file: "a.yaml") }
        let demo = try AgentConfiguration.parse(http.replacingOccurrences(of: "token_file: /t\n", with: "token_file: /t\n  insecure_demo: true\n"), file: "a.yaml")
        #expect(demo.collector.insecureDemo)
    }

    @Test func wallClockFloorIsADate() throws {
        let c = try AgentConfiguration.parse(Self.minimal + "\nclock:\n  wall_clock_floor: \"2020-01-01\"\n", file: "a.yaml")
        #expect(c.clock.wallClockFloorMilliseconds == 1_577_836_800_000)
        let c2 = try AgentConfiguration.parse(Self.minimal + "\nclock:\n  wall_clock_floor: \"2024-02-29\"\n", file: "a.yaml")
        #expect(c2.clock.wallClockFloorMilliseconds == 1_709_164_800_000)
    }

    /// Each bad file fails with the file, the line and the key, and says what would be valid.
    @Test(arguments: [
        (minimal + "\nsampling:\n  intervall_seconds: 5\n", 6, "sampling.intervall_seconds", "unknown key; valid keys here: interval_seconds"),
        (minimal + "\nsampling:\n  interval_seconds: ten\n", 6, "sampling.interval_seconds", "expected an integer in 1...3600"),
        (minimal + "\nsampling:\n  interval_seconds: 0\n", 6, "sampling.interval_seconds", "0 is out of range; valid: 1...3600"),
        (minimal + "\nsampling:\n  interval_seconds: 7\n  window_seconds: 60\n", 7, "sampling.window_seconds", "whole multiple"),
        (minimal + "\nlink:\n  enabled: yes please\n", 6, "link.enabled", "expected true or false"),
        (minimal + "\nlink:\n  interfaces: eth0\n", 6, "link.interfaces", "expected a list"),
        (minimal + "\nlogging:\n  level: loud\n", 6, "logging.level", "use one of: trace, debug, info"),
        (minimal + "\nprivacy:\n  key_epoch_days: 400\n", 6, "privacy.key_epoch_days", "valid: 1...366"),
        ("collector:\n  url: https://x\n  token_file: /t\n", 1, "device_id", "required key is missing"),
        ("device_id: 00:1b:21:3a:4f:5e\ncollector:\n  url: https://x\n  token_file: /t\n", 1, "device_id", "never a serial number or MAC"),
        (minimal + "\ncolector:\n  url: x\n", 5, "colector", "unknown key"),
        ("device_id: d\ncollector:\n  url: http://10.0.0.1\n  token_file: /t\n", 3, "collector.url", "send the device token in clear"),
        (minimal + "\n  pinned_public_key: abc\n", 5, "collector.pinned_public_key", "sha256//"),
        (minimal + "\nqueue:\n  max_reports: 60\n", 6, "queue", "replaced by the on-disk spool"),
        (minimal + "\nspool:\n  fsync: sometimes\n", 6, "spool.fsync", "use one of: always, os"),
        (minimal + "\nspool:\n  max_bytes: 1000\n", 6, "spool.max_bytes", "out of range"),
        (minimal + "\nclock:\n  wall_clock_floor: yesterday\n", 6, "clock.wall_clock_floor", "expected a date YYYY-MM-DD"),
    ])
    func badFilesNameTheLineAndKey(text: String, line: Int, key: String, message: String) {
        do {
            _ = try AgentConfiguration.parse(text, file: "agent.yaml")
            Issue.record("accepted a bad file")
        } catch {
            #expect(error.file == "agent.yaml")
            #expect(error.line == line, "\(error)")
            #expect(error.key == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }

    @Test func invalidYAMLNamesTheLine() {
        #expect { try AgentConfiguration.parse("device_id: a\ncollector: [unclosed\n", file: "a.yaml") } throws: { e in
            guard let e = e as? ConfigError else { return false }
            return e.line != nil && e.message.contains("invalid YAML")
        }
    }

    @Test func checkConfigCommandReportsTheSameError() throws {
        let dir = try TestSupport.tempDirectory()
        let file = dir.appendingPathComponent("bad.yaml")
        try (Self.minimal + "\nsampling:\n  interval_seconds: 0\n").write(to: file, atomically: true, encoding: .utf8)
        let out = try TestSupport.sh("\(TestSupport.executable("meetpunt-agent")) check-config \(file.path); echo exit=$?")
        #expect(out.contains("\(file.path):6: sampling.interval_seconds: 0 is out of range; valid: 1...3600"))
        #expect(out.contains("exit=2"))
    }

    /// A configuration that cannot be read stops `run` and `analyze` with its error on one line and exit
    /// status 64 (the unit's no-restart status), without a usage text: the arguments were right.
    @Test func aMissingConfigurationIsOneLineAndStatus64() throws {
        let missing = try TestSupport.tempDirectory().appendingPathComponent("absent.yaml").path
        let agent = TestSupport.executable("meetpunt-agent")
        for command in ["run -c \(missing) --duration 1", "analyze -c \(missing) /dev/null"] {
            let out = try TestSupport.sh("\(agent) \(command) 2>&1; echo exit=$?")
            #expect(out.contains("meetpunt-agent: \(missing): cannot open: No such file or directory"), "\(command): \(out)")
            #expect(!out.contains("Usage"), "\(command): \(out)")
            #expect(out.hasSuffix("exit=64\n") || out.hasSuffix("exit=64"), "\(command): \(out)")
        }
    }
}

/// libcrypto is opened at its first use, not linked (Sources/CLibCrypto): where it cannot be loaded, `run`
/// stops at start (with or without a device secret) and `analyze` at its first pseudonym, each with the
/// loader's reason, and no secret or output is left half-made. libcrypto is hidden by a bind mount of /dev/null over it in a private mount
/// namespace, so `dlopen` fails as on a router without libssl3.
@Suite(.enabled(if: TestSupport.isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
                "needs root and unshare to hide libcrypto in a mount namespace"))
struct MissingLibcryptoTests {
    @Test func runAndAnalyzeStopWithTheLoadersReason() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        let hide = dir.appendingPathComponent("hide.sh").path
        try """
            lib=$(ldconfig -p | awk '/libcrypto[.]so[.]3 /{print $NF; exit}')
            mount --bind /dev/null "$lib" && exec "$@"
            """.write(toFile: hide, atomically: true, encoding: .utf8)
        try "token\n".write(toFile: dir.appendingPathComponent("token").path, atomically: true, encoding: .utf8)
        try TestSupport.sh("chmod 600 \(dir.path)/token")
        let config = dir.appendingPathComponent("agent.yaml").path
        try """
            device_id: lc-1
            collector: {url: "http://127.0.0.1:9", token_file: \(dir.path)/token, insecure_demo: true}
            state_dir: \(dir.path)/state
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // A new router: the secret cannot be made.
        let fresh = try TestSupport.sh("unshare -m sh \(hide) \(agent) run -c \(config) --duration 1 2>&1; echo exit=$?")
        #expect(fresh.contains("cannot load libcrypto.so.3: ") && fresh.hasSuffix("exit=1\n"), "\(fresh)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/state/device-secret"), "no secret made without libcrypto")
        // A router with its secret: `run` still stops at start, before any sampler makes a pseudonym.
        try TestSupport.sh("mkdir -p \(dir.path)/state && head -c 32 /dev/urandom > \(dir.path)/state/device-secret && chmod 600 \(dir.path)/state/device-secret")
        let known = try TestSupport.sh("unshare -m sh \(hide) \(agent) run -c \(config) --duration 1 2>&1; echo exit=$?")
        #expect(known.contains("cannot load libcrypto.so.3: ") && known.hasSuffix("exit=1\n"), "\(known)")
        #expect(!known.contains("sampling"), "stopped before sampling: \(known)")

        // One Ethernet/IPv4/TCP SYN from a LAN host: its interval's client gets a pseudonym.
        let pcap = dir.appendingPathComponent("one.pcap").path
        try Data(Self.onePacketCapture).write(to: URL(fileURLWithPath: pcap))
        let hidden = try TestSupport.sh("unshare -m sh \(hide) \(agent) analyze \(pcap) 2>&1; echo exit=$?")
        #expect(hidden.contains("meetpunt-agent: cannot load libcrypto.so.3: ") && hidden.hasSuffix("exit=127\n"), "\(hidden)")
        #expect(!hidden.contains("1 packets"), "no summary is printed: \(hidden)")
        // The same file with libcrypto in place is analysed.
        let shown = try TestSupport.sh("\(agent) analyze \(pcap) 2>&1; echo exit=$?")
        #expect(shown.contains("EN10MB, 1 packets") && shown.hasSuffix("exit=0\n"), "\(shown)")
    }

    /// `analyze` loads libcrypto once the reader has a packet (`HMACSHA256.prepare`, ahead of the first
    /// pseudonym), and a capture without packets never loads it: the dynamic loader's own log says which
    /// libraries a process opened.
    @Test func analyzeLoadsLibcryptoOnlyForACaptureWithPackets() throws {
        let dir = try TestSupport.tempDirectory()
        let agent = TestSupport.executable("meetpunt-agent")
        let one = dir.appendingPathComponent("one.pcap").path
        try Data(Self.onePacketCapture).write(to: URL(fileURLWithPath: one))
        let empty = dir.appendingPathComponent("empty.pcap").path
        try Data(Self.onePacketCapture.prefix(24)).write(to: URL(fileURLWithPath: empty))  // the file header alone
        func opened(_ pcap: String) throws -> (libcrypto: Bool, output: String) {
            let out = try TestSupport.sh("LD_DEBUG=files \(agent) analyze \(pcap) 2>&1; echo exit=$?")
            return (out.contains("file=libcrypto.so.3"), out)
        }
        let withPacket = try opened(one)
        #expect(withPacket.libcrypto && withPacket.output.contains("EN10MB, 1 packets") && withPacket.output.hasSuffix("exit=0\n"), "\(withPacket.output)")
        let withoutPackets = try opened(empty)
        #expect(!withoutPackets.libcrypto, "\(withoutPackets.output)")
        #expect(withoutPackets.output.contains("EN10MB, 0 packets") && withoutPackets.output.hasSuffix("exit=0\n"), "\(withoutPackets.output)")
    }

    /// A pcap (microsecond, Ethernet) holding one TCP SYN from 192.168.1.2 to 198.51.100.7.
    static let onePacketCapture: [UInt8] = {
        func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let ethernet: [UInt8] = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]
        let ip: [UInt8] = [0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 192, 168, 1, 2, 198, 51, 100, 7]
        let tcp: [UInt8] = [0xC0, 0x01, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0]
        let frame = ethernet + ip + tcp
        let header = le32(0xA1B2_C3D4) + le16(2) + le16(4) + le32(0) + le32(0) + le32(65535) + le32(1)
        let record = le32(1_700_000_000) + le32(0) + le32(UInt32(frame.count)) + le32(UInt32(frame.count))
        return header + record + frame
    }()
}

@Suite struct CollectorConfigurationTests {
    @Test func shippedCollectorConfigAndRetentionAreValid() throws {
        let root = TestSupport.repositoryRoot
        let c = try CollectorConfiguration.load(path: root.appendingPathComponent("collector/collector.yaml").path)
        #expect(c.port == 8080)
        let policy = try RetentionPolicy.load(path: c.retentionFile)
        #expect(policy == RetentionPolicy.defaults)
    }

    @Test func retentionAboveTwentyFourMonthsRefusesToStart() throws {
        let text = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("collector/retention.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "max_age_days: 180", with: "max_age_days: 800")
        #expect { try RetentionPolicy.parse(text, file: "retention.yaml") } throws: { e in
            "\(e)".contains("retention.yaml:17: classes.traffic.max_age_days: 800 days exceeds the 24-month maximum")
        }
        // And the real server process exits with that message.
        let dir = try TestSupport.tempDirectory()
        try text.write(to: dir.appendingPathComponent("retention.yaml"), atomically: true, encoding: .utf8)
        try "storage: {sqlite_path: db.sqlite}\nlisten: {port: 0}\n".write(to: dir.appendingPathComponent("collector.yaml"), atomically: true, encoding: .utf8)
        let out = try TestSupport.sh("\(TestSupport.executable("meetpunt-collector")) serve --config \(dir.path)/collector.yaml; echo exit=$?")
        #expect(out.contains("exceeds the 24-month maximum"))
        #expect(out.contains("exit=2"))
    }

    /// A read-only command on a mistyped database path says so; it does not make a new, empty database
    /// and report an empty fleet. `device add` (first-time set-up) makes it.
    @Test func commandsOtherThanSetUpRefuseAMissingDatabase() throws {
        let dir = try TestSupport.tempDirectory()
        let retention = TestSupport.repositoryRoot.appendingPathComponent("collector/retention.yaml").path
        try "storage: {sqlite_path: data/db.sqlite}\nlisten: {port: 0}\nretention_file: \(retention)\n"
            .write(to: dir.appendingPathComponent("collector.yaml"), atomically: true, encoding: .utf8)
        let collector = "\(TestSupport.executable("meetpunt-collector"))"
        let config = "--config \(dir.path)/collector.yaml"
        for command in ["summary", "audit", "device list", "export dev-1 --reason test"] {
            let out = try TestSupport.sh("\(collector) \(command) \(config) 2>&1; echo exit=$?")
            #expect(out.contains("no database at \(dir.path)/data/db.sqlite"), "\(command): \(out)")
            #expect(out.contains("exit=2"), "\(command): \(out)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("data").path), "nothing was made")
        let added = try TestSupport.sh("\(collector) device add dev-1 \(config) --token-file \(dir.path)/token 2>&1; echo exit=$?")
        #expect(added.contains("exit=0"), "\(added)")
        let summary = try TestSupport.sh("\(collector) summary \(config) 2>&1; echo exit=$?")
        #expect(summary.contains("1 device(s)") && summary.contains("exit=0"), "\(summary)")
    }

    @Test func missingAndUnknownClassesAreRefused() {
        #expect { try RetentionPolicy.parse("classes:\n  link: {max_age_days: 10}\n", file: "r.yaml") } throws: { "\($0)".contains("missing") }
        #expect { try RetentionPolicy.parse("classes:\n  lnk: {max_age_days: 10}\n", file: "r.yaml") } throws: { "\($0)".contains("unknown data class") }
    }

    @Test func unknownCollectorKeyNamesTheLine() {
        #expect { try CollectorConfiguration.parse("listen:\n  port: 1\n  hots: x\n", file: "c.yaml") } throws: { e in
            "\(e)".contains("c.yaml:3: listen.hots: unknown key")
        }
    }
}
