import CLibCrypto
#if canImport(Glibc)
import Glibc
#endif

/// HMAC-SHA256 through OpenSSL's libcrypto, which CPE firmware ships for libcurl anyway (swift-crypto
/// would add 3.4 MB to the binary). OpenSSL 3.0 or newer: ``Keyed`` uses `EVP_MAC`. libcrypto is opened
/// (dlopen) at the first use here or at ``load()``, not at process start (Sources/CLibCrypto): `analyze`
/// loads it through ``prepare()`` on its interval folder's thread once the first packet is read.
/// Tests cross-check it against swift-crypto.
public enum HMACSHA256 {
    /// Why libcrypto could not be loaded, or nil once it is: loaded and initialised once, at the first
    /// use here.
    static let loadFailure: String? = {
        var error = [CChar](repeating: 0, count: 256)
        guard cmp_crypto_load(&error, error.count) != 0 else { return nil }
        return String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// For a process that never opens TLS (`analyze`): libcrypto, when it is loaded later, is initialised
    /// without reading OpenSSL's system configuration (openssl.cnf: TLS policy and providers, 0.4 ms of
    /// every `analyze` run) and without the legacy cipher and digest name tables, which OpenSSL 3 copies
    /// at the first fetch (0.35 ms). HMAC-SHA256 gives the same bytes either way. Irreversible and
    /// process-wide, as OpenSSL initialises once: libssl in the same process would then fail to verify
    /// certificates ("unknown message digest algorithm"), so `CurlTransport` refuses to start after it
    /// and `run` never calls it. Call it before another thread may load libcrypto; it has no effect once
    /// libcrypto is loaded, and returns false then.
    @discardableResult
    public static func configureForProcessWithoutTLS() -> Bool {
        cmp_crypto_configure_without_tls() != 0
    }

    /// Whether ``configureForProcessWithoutTLS()`` took effect in this process.
    public static var configuredWithoutTLS: Bool { cmp_crypto_is_without_tls() != 0 }

    /// Loads libcrypto now (`run` does at start, so that a router without it stops there with the reason).
    /// Throws when the library or one of its functions is missing.
    public static func load() throws(PseudonymisationError) {
        if let loadFailure { throw PseudonymisationError(.libraryMissing, loadFailure) }
    }

    /// Loads libcrypto and makes a first HMAC-SHA256: its fetch of the algorithm from OpenSSL's provider
    /// is most of a first pseudonym's cost (0.45-0.76 ms here, plus 0.75 ms to load the library), which
    /// a caller can thus pay early, on a thread of its choosing. Does nothing when libcrypto cannot be
    /// loaded: the first use reports that.
    public static func prepare() {
        guard loadFailure == nil else { return }
        _ = Keyed(key: [0]).authenticationCode(of: [])
    }

    /// HMAC and pseudonyms cannot work without libcrypto: a missing library stops the process as the
    /// dynamic loader stopped it when libcrypto was linked, with the reason on standard error and exit
    /// status 127 (the package depends on libssl3, so only a broken installation gets here). `_exit`:
    /// other threads may be reading a capture, and nothing of a half-done run is worth flushing.
    static var initialised: Void {
        guard let loadFailure else { return }
        let line = "meetpunt-agent: \(loadFailure)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        _exit(127)
    }

    public static func authenticationCode(key: [UInt8], message: [UInt8]) -> [UInt8] {
        _ = initialised
        var out = [UInt8](repeating: 0, count: 32)
        let ok = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    cmp_hmac_sha256(k.baseAddress, Int32(k.count), m.baseAddress, m.count, o.baseAddress)
                }
            }
        }
        // HMAC with SHA-256 cannot fail for in-memory inputs; a failure means libcrypto itself is broken.
        precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
        return out
    }

    /// HMAC-SHA256 under one key, computed many times: the key is set up once. Not for two threads at
    /// once (``Pseudonymiser`` guards its own).
    public final class Keyed {
        private let context: UnsafeMutableRawPointer

        public init(key: [UInt8]) {
            _ = HMACSHA256.initialised
            let made = key.withUnsafeBytes { cmp_hmac_sha256_keyed($0.baseAddress, $0.count) }
            // As for the one-shot: only a broken libcrypto cannot key an HMAC.
            guard let made else { preconditionFailure("libcrypto cannot make an HMAC-SHA256 context") }
            context = made
        }

        deinit { cmp_hmac_sha256_free(context) }

        public func authenticationCode(of message: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            let ok = message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { cmp_hmac_sha256_run(context, m.baseAddress, m.count, $0.baseAddress) }
            }
            precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
            return out
        }
    }

    /// Constant-time comparison of two MACs or digests.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        _ = initialised
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in cmp_constant_time_equal(pa.baseAddress, pb.baseAddress, a.count) == 1 } }
    }

    /// Cryptographically strong random bytes from libcrypto's DRBG.
    public static func randomBytes(count: Int) throws(PseudonymisationError) -> [UInt8] {
        try load()
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { cmp_random_bytes($0.baseAddress, Int32(count)) }
        guard ok == 1 else { throw PseudonymisationError(.randomFailed, "libcrypto RAND_bytes failed: no entropy for the device secret") }
        return out
    }
}
