#if canImport(Glibc)
import Glibc
#endif
import Pseudonymisation

/// The agent's state directory: the device secret and the last report sequence number live here.
public struct AgentState: Sendable {
    public let directory: String

    public init(directory: String) throws(AgentError) {
        self.directory = directory
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw AgentError("cannot create state directory \(directory): \(String(cString: strerror(errno)))")
        }
    }

    public var secretPath: String { Self.secretPath(in: directory) }
    public static func secretPath(in directory: String) -> String { directory + "/device-secret" }

    /// The device secret for technician commands (`pseudonym`, `sample`): read, never created. A
    /// pseudonym from a fresh secret would match nothing the collector holds, so without the agent's own
    /// secret these commands stop and say where they looked.
    public static func existingSecret(stateDirectory: String, configFile: String) throws(AgentError) -> DeviceSecret {
        let path = secretPath(in: stateDirectory)
        let secret: DeviceSecret?
        do { secret = try DeviceSecret.load(at: path) } catch { throw AgentError("\(error)") }
        guard let secret else {
            throw AgentError("no device secret at \(path) (state_dir of \(configFile)); the agent creates it on its first run. "
                             + "Technician commands never create one: run them with the agent's own configuration on the router it runs on")
        }
        return secret
    }
    var sequencePath: String { directory + "/sequence" }

    /// The last sequence number used, or 0 when there is no sequence file yet. A file that exists but cannot
    /// be read or parsed is an error: restarting at 1 would make the collector drop reports as duplicates.
    public func lastSequence() throws(AgentError) -> UInt64 {
        if access(sequencePath, F_OK) != 0, errno == ENOENT { return 0 }
        let text = try Self.read(sequencePath)
        guard let n = UInt64(text.split(separator: "\n").first ?? "") else {
            throw AgentError("sequence file \(sequencePath) does not hold a number; set it to the device's last_seq from `meetpunt-collector device list`")
        }
        return n
    }

    /// Records `seq` durably (write to a temporary file, fsync, rename) before the report is queued, so a
    /// restart never reuses a number.
    public func storeSequence(_ seq: UInt64) throws(AgentError) {
        try Self.writeAtomically(sequencePath, Array("\(seq)\n".utf8), mode: 0o600)
    }

    static func read(_ path: String) throws(AgentError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw AgentError("cannot read \(path): \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(AgentError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw AgentError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            throw AgentError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether only the owner may read `path` (false when group or others can, or it cannot be checked).
    public static func isPrivate(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & 0o077 == 0
    }

    /// Reads the device token from `path` (first line, trimmed).
    public static func readToken(_ path: String) throws(AgentError) -> String {
        let text = try read(path)
        let token = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == " " }).first.map(String.init) ?? ""
        guard !token.isEmpty else { throw AgentError("token file \(path) is empty; put the token printed by `meetpunt-collector device add` in it") }
        return token
    }
}

public struct AgentError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
