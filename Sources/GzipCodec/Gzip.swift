import CZlib

/// gzip (RFC 1952) over zlib, for report bodies. Decompression is bounded: a small body cannot expand
/// past `limit` bytes (a "zip bomb" fails with ``GzipError/tooLarge``).
public enum Gzip {
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws(GzipError) -> [UInt8] {
        var stream = z_stream()
        guard czlib_deflate_init_gzip(&stream, level) == Z_OK else { throw GzipError(.failed, "deflateInit2 failed") }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        var input = input
        let produced: Int = input.withUnsafeMutableBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(outBuf.count)
                let rc = deflate(&stream, Z_FINISH)
                return rc == Z_STREAM_END ? outBuf.count - Int(stream.avail_out) : -1
            }
        }
        guard produced >= 0 else { throw GzipError(.failed, "deflate did not finish") }
        return Array(output[..<produced])
    }

    /// Inflates `input`; throws when the result would exceed `limit` bytes or the data is not gzip.
    public static func decompress(_ input: [UInt8], limit: Int) throws(GzipError) -> [UInt8] {
        var stream = z_stream()
        guard czlib_inflate_init_gzip(&stream) == Z_OK else { throw GzipError(.failed, "inflateInit2 failed") }
        defer { inflateEnd(&stream) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        var status: Int32 = Z_OK
        try input.withUnsafeMutableBufferPointer { (inBuf) throws(GzipError) in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while status != Z_STREAM_END {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return outBuf.count - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END else {
                    throw GzipError(.corrupt, "body is not valid gzip (zlib status \(status))")
                }
                guard result.count + produced <= limit else {
                    throw GzipError(.tooLarge, "decompressed body exceeds \(limit) bytes")
                }
                result.append(contentsOf: chunk[..<produced])
                if status == Z_OK, produced == 0, stream.avail_in == 0 {
                    throw GzipError(.corrupt, "gzip body is truncated")
                }
            }
            guard stream.avail_in == 0 else {
                throw GzipError(.corrupt, "\(stream.avail_in) bytes follow the gzip stream; one gzip member per body")
            }
        }
        return result
    }
}

public struct GzipError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private enum Value { case failed, corrupt, tooLarge }
        private let value: Value
        private init(_ v: Value) { value = v }
        public static let failed = Code(.failed)
        public static let corrupt = Code(.corrupt)
        public static let tooLarge = Code(.tooLarge)
    }
    public let code: Code
    public let message: String
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// CRC-32 (the IEEE polynomial of gzip and zlib), for records that must detect torn or corrupt bytes.
public enum CRC32 {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return UInt32(truncatingIfNeeded: crc32(uLong(crc), base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }
}
