import CZstd
import Foundation
import Synchronization

/// The zstd dictionaries built into the collector for report payloads (storage codecs 2, 3 and 4, docs/storage.md).
///
/// A dictionary is trained once, by `scripts/storage/make-dictionary.sh`, on reports of the load generator's
/// simulated fleet (never on a subscriber's data), and compiled in. A stored payload of codec 2 or 3 names its
/// dictionary by the id in its zstd frame; codec 4's bare frames leave the id out, the codec names dictionary
/// 3. So a dictionary is never changed or removed once shipped: a better one is added as the next and becomes
/// ``current`` with a new codec; rows written with an older one keep decoding with it.
public enum PayloadDictionaries {
    /// Every dictionary this collector can read, oldest first: dictionary 1 (codec 2, format 1),
    /// dictionary 2 (codec 3, format 2) and dictionary 3 (codec 4, format 3, bare frames).
    public static let all: [PayloadDictionary] = {
        [(dictionary1Base64, false, 3), (dictionary2Base64, false, 3), (dictionary3Base64, true, currentLevel)].map { text, bare, level in
            guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                preconditionFailure("a built-in payload dictionary is not base64")
            }
            return PayloadDictionary(bytes: [UInt8](data), bareFrames: bare, level: level)
        }
    }()

    /// The zstd level new payloads are compressed at, and the next dictionary is trained for. With dictionary
    /// 3, level 6 writes 1.4 bytes a series less than level 3 on the generator's reports for about 22 µs more
    /// a row (docs/benchmarks.md, "Codec 4"); decompression does not depend on it.
    public static let currentLevel: Int32 = 6

    /// The dictionary new payloads are written with.
    public static var current: PayloadDictionary { all[all.count - 1] }

    /// The dictionary a standard frame (codecs 2 and 3) names by its id; bare frames name none.
    public static func dictionary(id: UInt32) -> PayloadDictionary? {
        all.first { !$0.bareFrames && $0.id == id }
    }

    /// A zstd frame's magic number, little-endian: what a bare frame (codec 4) leaves out.
    static let magicNumber: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    /// The uncompressed size a frame's header says it holds, or nil when the header is not one (cut short,
    /// damaged, no content size). A bare frame is read with its magic number put back.
    public static func contentSize(ofFrame payload: [UInt8], bare: Bool) -> UInt64? {
        // A frame header is at most 18 bytes after the magic number.
        let header = bare ? magicNumber + payload.prefix(18) : Array(payload.prefix(22))
        let size = header.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size != ZSTD_CONTENTSIZE_ERROR, size != ZSTD_CONTENTSIZE_UNKNOWN else { return nil }
        return size
    }

    /// The dictionary id a zstd frame names (0: none, or not a frame).
    public static func dictionaryID(ofFrame frame: [UInt8]) -> UInt32 {
        frame.withUnsafeBytes { ZSTD_getDictID_fromFrame($0.baseAddress, $0.count) }
    }

    /// Trains a dictionary of at most `capacity` bytes on `samples` (uncompressed series payloads) for
    /// `make-dictionary.sh`, with zstd's fastCover trainer searching its parameters (`k`, `d` of 6 and 8, 40
    /// steps) for the smallest payloads at ``currentLevel``, where `ZDICT_trainFromBuffer` (dictionaries 1
    /// and 2) tries 4 steps at `d` = 8 and level 3.
    public static func train(samples: [[UInt8]], capacity: Int) throws -> [UInt8] {
        var joined: [UInt8] = []
        joined.reserveCapacity(samples.reduce(0) { $0 + $1.count })
        for s in samples { joined += s }
        let sizes = samples.map { Int($0.count) }
        var out = [UInt8](repeating: 0, count: capacity)
        let n = out.withUnsafeMutableBytes { o in
            joined.withUnsafeBytes { j in
                sizes.withUnsafeBufferPointer { z in
                    var parameters = ZDICT_fastCover_params_t()
                    parameters.zParams.compressionLevel = currentLevel
                    return ZDICT_optimizeTrainFromBuffer_fastCover(o.baseAddress, o.count, j.baseAddress, z.baseAddress, UInt32(z.count), &parameters)
                }
            }
        }
        guard ZDICT_isError(n) == 0 else {
            throw SeriesCodec.EncodingFailure(description: "zstd dictionary training failed: \(String(cString: ZDICT_getErrorName(n)))")
        }
        return Array(out[..<n])
    }
}

/// One zstd dictionary, digested for compression (at its `level`) and decompression. Its digested forms are
/// read-only once made and zstd allows sharing them between threads; the per-call contexts come from small
/// pools, so no allocation of zstd's workspace happens per payload.
///
/// Dictionaries 1 and 2 write standard frames, with the magic number and the dictionary's id. Dictionary 3
/// writes bare frames (`bareFrames`): a standard frame without the dictionary id (`ZSTD_c_dictIDFlag` 0)
/// and with its first four bytes, the magic number, cut off; 8 bytes less a row, since the row's codec
/// already says both. The content size stays in the frame header. Only zstd's stable API is used: the
/// magic number is put back before a bare frame is read.
public final class PayloadDictionary: @unchecked Sendable {
    public let id: UInt32
    public let byteCount: Int
    public let bareFrames: Bool
    private let compressionDictionary: OpaquePointer
    private let decompressionDictionary: OpaquePointer
    private let compressors = ContextPool(make: { ZSTD_createCCtx() }, free: { _ = ZSTD_freeCCtx($0) })
    private let decompressors = ContextPool(make: { ZSTD_createDCtx() }, free: { _ = ZSTD_freeDCtx($0) })

    /// The zstd level this dictionary compresses at: 3 for dictionaries 1 and 2, ``PayloadDictionaries/currentLevel`` for 3.
    public let level: Int32

    init(bytes: [UInt8], bareFrames: Bool, level: Int32) {
        self.bareFrames = bareFrames
        self.level = level
        id = bytes.withUnsafeBytes { ZSTD_getDictID_fromDict($0.baseAddress, $0.count) }
        precondition(id != 0, "a built-in payload dictionary has no zstd dictionary id")
        byteCount = bytes.count
        guard let c = bytes.withUnsafeBytes({ ZSTD_createCDict($0.baseAddress, $0.count, level) }),
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

    /// One zstd frame with its content size: a standard frame with this dictionary's id, or a bare one.
    public func compress(_ raw: [UInt8]) throws -> [UInt8] {
        try compressors.with { context in
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(raw.count))
            let n = out.withUnsafeMutableBytes { o in
                raw.withUnsafeBytes { i in
                    guard bareFrames else {
                        return ZSTD_compress_usingCDict(context, o.baseAddress, o.count, i.baseAddress, i.count, compressionDictionary)
                    }
                    // Parameters stick to a context: reset them and set what this frame needs on every use.
                    var r = ZSTD_CCtx_reset(context, ZSTD_reset_session_and_parameters)
                    if ZSTD_isError(r) == 0 { r = ZSTD_CCtx_setParameter(context, ZSTD_c_dictIDFlag, 0) }
                    if ZSTD_isError(r) == 0 { r = ZSTD_CCtx_refCDict(context, compressionDictionary) }
                    if ZSTD_isError(r) != 0 { return r }
                    return ZSTD_compress2(context, o.baseAddress, o.count, i.baseAddress, i.count)
                }
            }
            guard ZSTD_isError(n) == 0 else { throw SeriesCodec.EncodingFailure(description: "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            out.removeSubrange(n...)
            if bareFrames {
                guard out.starts(with: PayloadDictionaries.magicNumber) else { throw SeriesCodec.EncodingFailure(description: "zstd wrote no frame magic number") }
                out.removeFirst(PayloadDictionaries.magicNumber.count)
            }
            return out
        }
    }

    /// The `size` bytes `payload` holds (its frame's content size, checked by the caller).
    public func decompress(_ payload: [UInt8], size: Int) throws -> [UInt8] {
        let frame = bareFrames ? PayloadDictionaries.magicNumber + payload : payload
        return try decompressors.with { context in
            var out = [UInt8](repeating: 0, count: size)
            let n = out.withUnsafeMutableBytes { o in
                frame.withUnsafeBytes { i in
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
