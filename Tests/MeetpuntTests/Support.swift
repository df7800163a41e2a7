import CTestSupport
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the tests: privileges, shell commands, network namespaces, raw frames, processes.
enum TestSupport {
    static var isRoot: Bool { geteuid() == 0 }
    static var hasIP: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") }
    static var canUseNetns: Bool { isRoot && hasIP }

    /// The folder holding the built executables: on Linux the test binary sits beside them.
    static var productsDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    static func executable(_ name: String) -> String { productsDirectory.appendingPathComponent(name).path }

    static var fixtures: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures") }

    /// The repository root (for the shipped config files and docs).
    static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    @discardableResult
    static func sh(_ command: String, check: Bool = true) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if check, p.terminationStatus != 0 {
            throw TestFailure("command failed (\(p.terminationStatus)): \(command)\n\(text)")
        }
        return text
    }

    /// Writes a collector configuration (loopback, a free port, SQLite in `dir`, the repository's
    /// retention file) into `dir` and returns its path.
    static func collectorConfig(in dir: URL) throws -> String {
        let config = dir.appendingPathComponent("collector.yaml").path
        try """
            listen: {host: 127.0.0.1, port: 0}
            storage: {sqlite_path: \(dir.path)/collector.sqlite}
            retention_file: \(repositoryRoot.path)/collector/retention.yaml
            """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    static func uniqueSuffix() -> String { String(UInt32.random(in: 0..<0xFFFFFF), radix: 16) }

    static func tempDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("meetpunt-test-\(uniqueSuffix())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func sysfsCounter(_ interface: String, _ name: String, namespace: String? = nil) throws -> UInt64 {
        let prefix = namespace.map { "ip netns exec \($0) " } ?? ""
        let text = try sh("\(prefix)cat /sys/class/net/\(interface)/statistics/\(name)")
        guard let n = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("bad counter \(text)") }
        return n
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A network namespace made by the test and deleted with it.
final class NetworkNamespace {
    let name: String

    init(prefix: String = "mpt") throws {
        name = "\(prefix)-\(TestSupport.uniqueSuffix())"
        try TestSupport.sh("ip netns add \(name)")
    }

    func exec(_ command: String, check: Bool = true) throws -> String {
        try TestSupport.sh("ip netns exec \(name) \(command)", check: check)
    }

    /// Runs `body` on a fresh thread that has entered this namespace: sockets it opens live there.
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let fd = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("cannot open namespace \(name)") }
        defer { close(fd) }
        var result: Result<T, any Error> = .failure(TestFailure("namespace thread did not run"))
        let job = NamespaceJob(fd: fd) { result = Result { try body() } }
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        guard pthread_create(&thread, nil, { raw in
            let job = Unmanaged<NamespaceJob>.fromOpaque(raw!).takeRetainedValue()
            if ctest_enter_netns(job.fd) == 0 { job.work() } else { job.failed = true }
            return nil
        }, context) == 0 else {
            Unmanaged<NamespaceJob>.fromOpaque(context).release()
            throw TestFailure("pthread_create failed")
        }
        pthread_join(thread, nil)
        if job.failed { throw TestFailure("setns into \(name) failed") }
        return try result.get()
    }

    deinit {
        _ = try? TestSupport.sh("ip netns del \(name)", check: false)
    }
}

private final class NamespaceJob {
    let fd: Int32
    let work: () -> Void
    var failed = false
    init(fd: Int32, work: @escaping () -> Void) {
        self.fd = fd
        self.work = work
    }
}

/// Sends raw Ethernet frames through an AF_PACKET socket (in the calling thread's namespace): exact
/// counts and sizes, no IP stack involved.
enum RawFrames {
    /// Sends `count` frames of `size` bytes (header included) with the local-experimental EtherType 0x88B5.
    static func send(interface: String, count: Int, size: Int, destination: [UInt8] = [0x02, 0, 0, 0, 0, 0x99]) throws {
        precondition(size >= 60)
        let index = if_nametoindex(interface)
        guard index > 0 else { throw TestFailure("no interface \(interface)") }
        var frame = [UInt8](repeating: 0x5A, count: size)
        frame.replaceSubrange(0..<6, with: destination)
        frame.replaceSubrange(6..<12, with: [0x02, 0, 0, 0, 0, 0x98])
        frame[12] = 0x88
        frame[13] = 0xB5
        let sent = ctest_send_frames(Int32(index), frame, Int32(size), Int32(count))
        guard sent == count else { throw TestFailure("sending frames on \(interface) failed: \(sent)") }
    }
}

/// A child process with its output collected.
final class ChildProcess: @unchecked Sendable {  // `collected` is guarded by `lock`
    let process = Process()
    let output = Pipe()
    private(set) var collected = Data()
    private let lock = NSLock()

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            self.collected.append(d)
            self.lock.unlock()
        }
        try process.run()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Waits for `needle` in the output, up to `timeout` seconds.
    func waitFor(_ needle: String, timeout: Double = 30) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(needle) }) { return String(line) }
            guard process.isRunning else { throw TestFailure("process exited before printing \(needle):\n\(text)") }
            usleep(50_000)
        }
        throw TestFailure("timed out waiting for \(needle):\n\(text)")
    }

    /// `waitFor` for async tests: sleeps without holding a cooperative thread (long synchronous waits
    /// starve the other tests' tasks on a 2-core machine).
    func awaitLine(_ needle: String, timeout: Double = 30) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(needle) }) { return String(line) }
            guard process.isRunning else { throw TestFailure("process exited before printing \(needle):\n\(text)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        // Once more after the deadline: a starved test task must not miss a line that did come.
        if let line = text.split(separator: "\n").first(where: { $0.contains(needle) }) { return String(line) }
        throw TestFailure("timed out waiting for \(needle):\n\(text)")
    }

    func awaitExit(timeout: Double = 60) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            guard Date() < deadline else {
                process.terminate()
                throw TestFailure("process did not exit in \(timeout) s:\n\(text)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(100))
        return process.terminationStatus
    }

    func waitForExit(timeout: Double = 60) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            guard Date() < deadline else {
                process.terminate()
                throw TestFailure("process did not exit in \(timeout) s:\n\(text)")
            }
            usleep(50_000)
        }
        usleep(100_000)
        return process.terminationStatus
    }

    func stop() {
        if process.isRunning { process.terminate() }
        _ = try? waitForExit(timeout: 15)
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// A `meetpunt-collector serve` process on SQLite in its own directory, one device registered.
final class CollectorProcess {
    let directory: URL
    let device: String
    let token: String
    let port: Int
    let server: ChildProcess
    var sqlitePath: String { directory.appendingPathComponent("collector.sqlite").path }

    /// `tls`: (certificate, key) PEM files to serve HTTPS with.
    init(device: String, tls: (String, String)? = nil, extraConfig: String = "") throws {
        directory = try TestSupport.tempDirectory()
        self.device = device
        var listen = "listen: {host: 127.0.0.1, port: 0}"
        if let (cert, key) = tls { listen = "listen: {host: 127.0.0.1, port: 0, tls: {certificate_file: \(cert), private_key_file: \(key)}}" }
        let config = directory.appendingPathComponent("collector.yaml").path
        try """
            \(listen)
            storage: {sqlite_path: \(directory.path)/collector.sqlite}
            retention_file: \(TestSupport.repositoryRoot.path)/collector/retention.yaml
            \(extraConfig)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let exe = TestSupport.executable("meetpunt-collector")
        try TestSupport.sh("\(exe) device add \(device) --config \(config) --token-file \(directory.path)/device.token")
        token = try String(contentsOfFile: "\(directory.path)/device.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        server = try ChildProcess(exe, ["serve", "--config", config])
        guard let p = Int(try server.waitFor("listening on").split(separator: ":").last ?? "") else {
            throw TestFailure("no port in the collector's output:\n\(server.text)")
        }
        port = p
    }

    var tokenFile: String { directory.appendingPathComponent("device.token").path }

    /// The sequence numbers stored for the device, ascending, with how often each is stored.
    func storedSequences() throws -> [UInt64: Int] {
        let q = try DatabaseQueue(path: sqlitePath)
        return try q.read { db in
            var result: [UInt64: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT seq, COUNT(*) AS n FROM reports WHERE device_id = ? GROUP BY seq", arguments: [device]) {
                result[UInt64(row["seq"] as Int64)] = row["n"]
            }
            return result
        }
    }

    func stop() { server.stop() }
    deinit { server.stop() }
}
