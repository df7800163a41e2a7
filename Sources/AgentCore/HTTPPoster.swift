import CCurl

/// One HTTP POST through libcurl (kept out of NIO: a static AsyncHTTPClient agent is twice the size).
/// Blocking; call it from ``BlockingCall``.
struct HTTPPoster: Sendable {
    struct Response: Sendable {
        var status: Int
        /// At most 64 KiB of the response body.
        var body: [UInt8]
    }

    struct Failure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    static let globalInit: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    let timeoutSeconds: Int

    final class Sink {
        var body: [UInt8] = []
        let limit = 64 * 1024
    }

    func post(url: String, body: [UInt8], headers: [String]) -> Result<Response, Failure> {
        _ = Self.globalInit
        guard let handle = curl_easy_init() else { return .failure(Failure(message: "curl_easy_init failed")) }
        defer { curl_easy_cleanup(handle) }
        var list: UnsafeMutablePointer<curl_slist>?
        for h in headers { list = curl_slist_append(list, h) }
        defer { curl_slist_free_all(list) }
        let sink = Sink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        return body.withUnsafeBufferPointer { bodyBuffer in
            errorBuffer.withUnsafeMutableBufferPointer { errorPtr in
                _ = ccurl_setopt_string(handle, CURLOPT_URL, url)
                _ = ccurl_setopt_long(handle, CURLOPT_POST, 1)
                _ = ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bodyBuffer.baseAddress))
                _ = ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, bodyBuffer.count)
                _ = ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list)
                _ = ccurl_setopt_long(handle, CURLOPT_TIMEOUT, timeoutSeconds)
                _ = ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, min(timeoutSeconds, 10))
                _ = ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
                _ = ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
                _ = ccurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
                _ = ccurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorPtr.baseAddress)
                _ = ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged.toOpaque())
                _ = ccurl_setopt_write_function(handle) { data, size, count, user in
                    let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
                    let n = size * count
                    if let data, sink.body.count < sink.limit {
                        let take = min(n, sink.limit - sink.body.count)
                        sink.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: take))
                    }
                    return n
                }
                let rc = curl_easy_perform(handle)
                guard rc == CURLE_OK else {
                    let detail = String(cString: errorPtr.baseAddress!)
                    let text = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
                    return .failure(Failure(message: "POST \(url) failed: \(text)"))
                }
                var status = 0
                _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
                return .success(Response(status: status, body: sink.body))
            }
        }
    }
}
