#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The per-device pseudonymisation secret: 32 random bytes, generated at first start (or provisioned),
/// kept in the agent's state directory with mode 0600. Losing it breaks linkability of old and new
/// pseudonyms and nothing else; it never leaves the device.
public struct DeviceSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// Never the bytes, whoever prints or interpolates a secret.
    public var description: String { "DeviceSecret(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    public init(bytes: [UInt8]) throws(PseudonymisationError) {
        guard bytes.count == Self.byteCount else {
            throw PseudonymisationError(.badSecret, "a device secret is \(Self.byteCount) bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// Reads the secret at `path`, creating it (mode 0600, exclusive create) when it does not exist.
    /// Refuses a file that others can read: the secret would no longer protect anything.
    public static func loadOrCreate(at path: String) throws(PseudonymisationError) -> DeviceSecret {
        if let existing = try load(at: path) { return existing }
        let fresh = try HMACSHA256.randomBytes(count: byteCount)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            let e = errno
            if e == EEXIST, let raced = try load(at: path) { return raced }
            throw PseudonymisationError(.io, "cannot create device secret \(path): \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        let written = fresh.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == byteCount, fsync(fd) == 0 else {
            unlink(path)
            throw PseudonymisationError(.io, "cannot write device secret \(path): \(String(cString: strerror(errno)))")
        }
        return try DeviceSecret(bytes: fresh)
    }

    /// The secret at `path`, or nil when there is no such file.
    public static func load(at path: String) throws(PseudonymisationError) -> DeviceSecret? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw PseudonymisationError(.io, "cannot open device secret \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw PseudonymisationError(.io, "cannot stat device secret \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw PseudonymisationError(.badSecret, "device secret \(path) is readable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); run chmod 600 \(path)")
        }
        var buffer = [UInt8](repeating: 0, count: byteCount + 1)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n == byteCount else {
            throw PseudonymisationError(.badSecret, "device secret \(path) holds \(max(n, 0)) bytes, expected \(byteCount); move it away to generate a new one (old pseudonyms will no longer link)")
        }
        return try DeviceSecret(bytes: Array(buffer[0..<byteCount]))
    }
}

public struct PseudonymisationError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private enum Value { case io, badSecret, randomFailed, libraryMissing }
        private let value: Value
        private init(_ v: Value) { value = v }
        public static let io = Code(.io)
        public static let badSecret = Code(.badSecret)
        public static let randomFailed = Code(.randomFailed)
        /// libcrypto.so.3 (OpenSSL 3) could not be loaded.
        public static let libraryMissing = Code(.libraryMissing)
    }
    public let code: Code
    public let message: String
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
