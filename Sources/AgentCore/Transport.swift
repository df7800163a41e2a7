import CCurl
import Pseudonymisation

/// What the collector answered to one request.
public struct TransportResponse: Sendable, Equatable {
    public var status: Int
    /// `Retry-After` in seconds, when the answer carried one as a number (an HTTP date is ignored).
    public var retryAfterSeconds: Int?
    /// At most 64 KiB of the body.
    public var body: [UInt8]
    public init(status: Int, retryAfterSeconds: Int? = nil, body: [UInt8] = []) {
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
        self.body = body
    }
}

/// How the shipper reaches the collector: one POST of a gzip-compressed JSON body to a path below the
/// collector's URL. The shipper's logic (batching, backoff, acknowledgements) is tested against other
/// implementations of it; ``CurlTransport`` is the real one.
public protocol ReportTransport: Sendable {
    func post(path: String, gzipBody: [UInt8]) async -> Result<TransportResponse, AgentError>
    /// A GET of a small JSON document (the check-in's settings).
    func get(path: String) async -> Result<TransportResponse, AgentError>
}

/// HTTPS (or, with `insecure_demo`, HTTP) through libcurl, kept out of NIO: a static AsyncHTTPClient agent
/// is twice the size. Every option set is checked; an option libcurl refuses fails the request with its
/// name. The token is sent only in the `Authorization` header and never appears in an error or a
/// description.
public struct CurlTransport: ReportTransport, CustomStringConvertible {
    public let baseURL: String
    let token: String
    let timeoutSeconds: Int
    let caFile: String?
    let pinnedPublicKey: String?

    /// 7.85.0 brought `CURLOPT_PROTOCOLS_STR`, which limits the transfer to http and https.
    public static let minimumVersion: UInt32 = 0x07_55_00

    /// Loads libcurl (it is not linked: see Sources/CCurl) and initialises it, once; the reason when it
    /// cannot be loaded or initialised.
    static let loadFailure: String? = {
        var reason = [CChar](repeating: 0, count: 256)
        guard ccurl_load(&reason, reason.count) == 0 else {
            return String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return nil
    }()

    /// Refuses a libcurl that cannot be loaded, one older than ``minimumVersion``, or one without TLS
    /// when `https://` is configured; and refuses to start in a process that set libcrypto up without
    /// TLS (``HMACSHA256/configureForProcessWithoutTLS()``).
    public init(baseURL: String, token: String, timeoutSeconds: Int, caFile: String? = nil, pinnedPublicKey: String? = nil) throws(AgentError) {
        // libcrypto set up for a process without TLS (`analyze`) cannot verify a certificate.
        guard !HMACSHA256.configuredWithoutTLS else {
            throw AgentError(.refused, "this process set up libcrypto without TLS (HMACSHA256.configureForProcessWithoutTLS), so it cannot ship reports")
        }
        if let failure = Self.loadFailure {
            throw AgentError(.refused, "\(failure); install libcurl 7.85.0 or newer (Debian: libcurl4)")
        }
        let version = ccurl_version_num()
        guard version >= Self.minimumVersion else {
            throw AgentError(.refused, "libcurl \(String(cString: ccurl_version_string())) is too old: the agent needs 7.85.0 or newer (CURLOPT_PROTOCOLS_STR)")
        }
        if baseURL.hasPrefix("https://"), String(cString: ccurl_ssl_version_string()).isEmpty {
            throw AgentError(.refused, "this libcurl has no TLS support, so \(baseURL) cannot be reached; install a libcurl built with OpenSSL")
        }
        self.baseURL = baseURL.hasSuffix("/") ? baseURL : baseURL + "/"
        self.token = token
        self.timeoutSeconds = timeoutSeconds
        self.caFile = caFile
        self.pinnedPublicKey = pinnedPublicKey
    }

    /// What service-lifecycle and error messages may show: never the token.
    public var description: String { "CurlTransport(url: \(baseURL), token: <redacted>)" }

    public static var libraryVersion: String {
        if let failure = loadFailure { return failure }
        return "libcurl \(String(cString: ccurl_version_string())) (\(String(cString: ccurl_ssl_version_string())))"
    }

    public func post(path: String, gzipBody: [UInt8]) async -> Result<TransportResponse, AgentError> {
        let request = self
        return await BlockingCall.run { request.perform(url: request.baseURL + path, body: gzipBody) }
    }

    public func get(path: String) async -> Result<TransportResponse, AgentError> {
        let request = self
        return await BlockingCall.run { request.perform(url: request.baseURL + path, body: nil) }
    }

    final class Sink {
        var body: [UInt8] = []
        var retryAfter: Int?
        let limit = 64 * 1024
    }

    /// A POST of `body`, or a GET when it is nil.
    func perform(url: String, body: [UInt8]?) -> Result<TransportResponse, AgentError> {
        guard let handle = ccurl_easy_init() else { return .failure(AgentError(.transport, "curl_easy_init failed")) }
        defer { ccurl_easy_cleanup(handle) }
        var list: UnsafeMutablePointer<curl_slist>?
        let headers = body == nil ? ["Accept: application/json", "Authorization: Bearer \(token)"]
            : ["Content-Type: application/json", "Content-Encoding: gzip", "Authorization: Bearer \(token)", "Expect:"]
        for h in headers {
            list = ccurl_slist_append(list, h)
        }
        defer { ccurl_slist_free_all(list) }
        let sink = Sink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        return (body ?? []).withUnsafeBufferPointer { bodyBuffer in
            errorBuffer.withUnsafeMutableBufferPointer { errorPtr -> Result<TransportResponse, AgentError> in
                var refused: AgentError?
                func set(_ name: String, _ rc: CURLcode) {
                    if rc != CURLE_OK, refused == nil {
                        refused = AgentError(.refused, "libcurl refused \(name): \(String(cString: ccurl_easy_strerror(rc)))")
                    }
                }
                set("CURLOPT_URL", ccurl_setopt_string(handle, CURLOPT_URL, url))
                if body != nil {
                    set("CURLOPT_POST", ccurl_setopt_long(handle, CURLOPT_POST, 1))
                    set("CURLOPT_POSTFIELDS", ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bodyBuffer.baseAddress)))
                    set("CURLOPT_POSTFIELDSIZE", ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, bodyBuffer.count))
                } else {
                    set("CURLOPT_HTTPGET", ccurl_setopt_long(handle, CURLOPT_HTTPGET, 1))
                }
                set("CURLOPT_HTTPHEADER", ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
                set("CURLOPT_TIMEOUT", ccurl_setopt_long(handle, CURLOPT_TIMEOUT, timeoutSeconds))
                set("CURLOPT_CONNECTTIMEOUT", ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, min(timeoutSeconds, 10)))
                set("CURLOPT_NOSIGNAL", ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
                set("CURLOPT_FOLLOWLOCATION", ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
                set("CURLOPT_PROTOCOLS_STR", ccurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
                set("CURLOPT_SSL_VERIFYPEER", ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
                set("CURLOPT_SSL_VERIFYHOST", ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
                set("CURLOPT_SSLVERSION", ccurl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
                if let caFile { set("CURLOPT_CAINFO", ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile)) }
                if let pinnedPublicKey { set("CURLOPT_PINNEDPUBLICKEY", ccurl_setopt_string(handle, CURLOPT_PINNEDPUBLICKEY, pinnedPublicKey)) }
                set("CURLOPT_ERRORBUFFER", ccurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorPtr.baseAddress))
                set("CURLOPT_WRITEDATA", ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged.toOpaque()))
                set("CURLOPT_WRITEFUNCTION", ccurl_setopt_write_function(handle) { data, size, count, user in
                    let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
                    let n = size * count
                    if let data, sink.body.count < sink.limit {
                        let take = min(n, sink.limit - sink.body.count)
                        sink.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: take))
                    }
                    return n
                })
                set("CURLOPT_HEADERDATA", ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, unmanaged.toOpaque()))
                set("CURLOPT_HEADERFUNCTION", ccurl_setopt_header_function(handle) { data, size, count, user in
                    let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
                    let n = size * count
                    if let data, n < 1024 {
                        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
                        if line.lowercased().hasPrefix("retry-after:") {
                            sink.retryAfter = Int(String(line.dropFirst(12)).trimmingCharacters(in: " \t\r\n"))
                        }
                    }
                    return n
                })
                if let refused { return .failure(refused) }
                let rc = ccurl_easy_perform(handle)
                guard rc == CURLE_OK else {
                    let detail = String(cString: errorPtr.baseAddress!)
                    let text = detail.isEmpty ? String(cString: ccurl_easy_strerror(rc)) : detail
                    return .failure(AgentError(.transport, "\(body == nil ? "GET" : "POST") \(url) failed: \(text)"))
                }
                var status = 0
                _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
                return .success(TransportResponse(status: status, retryAfterSeconds: sink.retryAfter, body: sink.body))
            }
        }
    }
}

extension String {
    /// `self` without leading and trailing characters in `set` (FoundationEssentials has no CharacterSet here).
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        guard let first = firstIndex(where: { !chars.contains($0) }) else { return "" }
        let last = lastIndex(where: { !chars.contains($0) })!
        return String(self[first...last])
    }
}
