import CZstd
import Foundation
import Synchronization

/// The zstd dictionaries built into the collector for report payloads (storage codecs 2 and 3, docs/storage.md).
///
/// A dictionary is trained once, by `scripts/storage/make-dictionary.sh`, on reports of the load generator's
/// simulated fleet (never on a subscriber's data), and compiled in. A stored payload names its dictionary by
/// the id in its zstd frame, so a dictionary is never changed or removed once shipped: a better one is
/// added with a new id and becomes ``current``; rows written with an older one keep decoding with it.
public enum PayloadDictionaries {
    /// Every dictionary this collector can read, oldest first: dictionary 1 (codec 2, format 1) and
    /// dictionary 2 (codec 3, format 2).
    public static let all: [PayloadDictionary] = {
        [dictionary1Base64, dictionary2Base64].map { text in
            guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                preconditionFailure("a built-in payload dictionary is not base64")
            }
            return PayloadDictionary(bytes: [UInt8](data))
        }
    }()

    /// The dictionary new payloads are written with.
    public static var current: PayloadDictionary { all[all.count - 1] }

    public static func dictionary(id: UInt32) -> PayloadDictionary? {
        all.first { $0.id == id }
    }

    /// The dictionary id a zstd frame names (0: none, or not a frame).
    public static func dictionaryID(ofFrame frame: [UInt8]) -> UInt32 {
        frame.withUnsafeBytes { ZSTD_getDictID_fromFrame($0.baseAddress, $0.count) }
    }

    /// Trains a dictionary of at most `capacity` bytes on `samples` (uncompressed series payloads) with
    /// zstd's default trainer (`ZDICT_trainFromBuffer`); for `make-dictionary.sh`.
    public static func train(samples: [[UInt8]], capacity: Int) throws -> [UInt8] {
        var joined: [UInt8] = []
        joined.reserveCapacity(samples.reduce(0) { $0 + $1.count })
        for s in samples { joined += s }
        let sizes = samples.map { Int($0.count) }
        var out = [UInt8](repeating: 0, count: capacity)
        let n = out.withUnsafeMutableBytes { o in
            joined.withUnsafeBytes { j in
                sizes.withUnsafeBufferPointer { z in
                    ZDICT_trainFromBuffer(o.baseAddress, o.count, j.baseAddress, z.baseAddress, UInt32(z.count))
                }
            }
        }
        guard ZDICT_isError(n) == 0 else {
            throw SeriesCodec.EncodingFailure(description: "zstd dictionary training failed: \(String(cString: ZDICT_getErrorName(n)))")
        }
        return Array(out[..<n])
    }
}

/// One zstd dictionary, digested for compression (level 3) and decompression. Its digested forms are
/// read-only once made and zstd allows sharing them between threads; the per-call contexts come from small
/// pools, so no allocation of zstd's workspace happens per payload.
public final class PayloadDictionary: @unchecked Sendable {
    public let id: UInt32
    public let byteCount: Int
    private let compressionDictionary: OpaquePointer
    private let decompressionDictionary: OpaquePointer
    private let compressors = ContextPool(make: { ZSTD_createCCtx() }, free: { _ = ZSTD_freeCCtx($0) })
    private let decompressors = ContextPool(make: { ZSTD_createDCtx() }, free: { _ = ZSTD_freeDCtx($0) })

    public static let compressionLevel: Int32 = 3

    init(bytes: [UInt8]) {
        id = bytes.withUnsafeBytes { ZSTD_getDictID_fromDict($0.baseAddress, $0.count) }
        precondition(id != 0, "a built-in payload dictionary has no zstd dictionary id")
        byteCount = bytes.count
        guard let c = bytes.withUnsafeBytes({ ZSTD_createCDict($0.baseAddress, $0.count, Self.compressionLevel) }),
              let d = bytes.withUnsafeBytes({ ZSTD_createDDict($0.baseAddress, $0.count) }) else {
            preconditionFailure("zstd cannot load built-in payload dictionary \(id)")
        }
        compressionDictionary = c
        decompressionDictionary = d
    }

    deinit {
        ZSTD_freeCDict(compressionDictionary)
        ZSTD_freeDDict(decompressionDictionary)
    }

    /// One zstd frame with its content size and this dictionary's id.
    public func compress(_ raw: [UInt8]) throws -> [UInt8] {
        try compressors.with { context in
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count))
            let n = out.withUnsafeMutableBytes { o in
                raw.withUnsafeBytes { i in
                    ZSTD_compress_usingCDict(context, o.baseAddress, o.count, i.baseAddress, i.count, compressionDictionary)
                }
            }
            guard ZSTD_isError(n) == 0 else { throw SeriesCodec.EncodingFailure(description: "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            out.removeSubrange(n...)
            return out
        }
    }

    /// The `size` bytes `payload` holds (its frame's content size, checked by the caller).
    public func decompress(_ payload: [UInt8], size: Int) throws -> [UInt8] {
        try decompressors.with { context in
            var out = [UInt8](repeating: 0, count: size)
            let n = out.withUnsafeMutableBytes { o in
                payload.withUnsafeBytes { i in
                    ZSTD_decompress_usingDDict(context, o.baseAddress, o.count, i.baseAddress, i.count, decompressionDictionary)
                }
            }
            guard ZSTD_isError(n) == 0, n == size else { throw SeriesCodec.DecodingFailure(description: "stored payload does not decompress with dictionary \(id)") }
            return out
        }
    }
}

/// zstd contexts for reuse: at most `keep` idle ones are held, more are freed.
private final class ContextPool: @unchecked Sendable {
    /// A zstd context: used by one caller at a time, handed between threads through the pool.
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }
    private let idle = Mutex<[Context]>([])
    private let make: () -> OpaquePointer?
    private let free: (OpaquePointer) -> Void
    private let keep = 8

    init(make: @escaping () -> OpaquePointer?, free: @escaping (OpaquePointer) -> Void) {
        self.make = make
        self.free = free
    }

    deinit {
        for context in idle.withLock({ $0 }) { free(context.pointer) }
    }

    func with<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        guard let context = idle.withLock({ $0.popLast() }) ?? make().map(Context.init) else {
            throw SeriesCodec.DecodingFailure(description: "zstd cannot make a context (out of memory)")
        }
        defer {
            let kept = idle.withLock { pool in
                guard pool.count < keep else { return false }
                pool.append(context)
                return true
            }
            if !kept { free(context.pointer) }
        }
        return try body(context.pointer)
    }
}
