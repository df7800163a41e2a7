#if canImport(Glibc)
import Glibc
#endif
import Pseudonymisation

/// The agent's state directory: the device secret, and the spool (which holds the report sequence) below it.
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

/// The agent's error: a code callers can tell apart, a message naming what, where and what to do, and
/// the `errno` behind it when there is one. Messages never carry a secret.
public struct AgentError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case state, spool, transport, refused, configuration }
        private let value: Value
        private init(_ v: Value) { value = v }
        /// The state directory, device secret or token file.
        public static let state = Code(.state)
        /// The on-disk spool (disk full shows here with `errno` ENOSPC).
        public static let spool = Code(.spool)
        /// Reaching the collector: DNS, connect, TLS, timeout.
        public static let transport = Code(.transport)
        /// Something the agent refuses to do (a libcurl too old, an option libcurl rejects).
        public static let refused = Code(.refused)
        public static let configuration = Code(.configuration)
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    public let errno: Int32?

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public init(_ message: String) { self.init(.state, message) }
    public var description: String { message }
}
