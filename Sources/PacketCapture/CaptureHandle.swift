import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// Errors from libpcap: opening, filters, reading. Messages name the file or interface and, for files,
/// the byte offset where reading failed.
public struct CaptureError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private enum Value { case open, filter, read, configuration }
        private let value: Value
        private init(_ v: Value) { value = v }
        public static let open = Code(.open)
        public static let filter = Code(.filter)
        public static let read = Code(.read)
        public static let configuration = Code(.configuration)
    }

    public let code: Code
    public let message: String
    /// Byte offset in the capture file where the problem was met, when reading a file.
    public let offset: Int?

    init(_ code: Code, _ message: String, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    public var description: String { offset.map { "\(message) (at byte offset \($0))" } ?? message }
}

/// One packet's metadata as libpcap delivers it.
public struct PacketMeta: Sendable {
    /// Capture timestamp in nanoseconds since the Unix epoch (files are read at nanosecond precision;
    /// microsecond files and live captures have whole microseconds).
    public var timestampNanoseconds: Int64
    public var timestampMicroseconds: Int64 { timestampNanoseconds / 1000 }
    /// Length on the wire.
    public var originalLength: Int
    /// Bytes captured (at most the snaplen).
    public var capturedLength: Int
    /// 1-based position in the capture.
    public var frameNumber: Int
}

/// Owns one `pcap_t`: an offline file or a live interface. Reading hands each packet to a closure as a
/// ``HeaderView`` that cannot reach payload. Not `Sendable`: one capture thread owns it.
public final class CaptureHandle {
    private let handle: OpaquePointer
    public let linkType: Int32
    public let source: String
    public let isLive: Bool
    private var frames = 0

    /// Opens a pcap or pcapng file.
    public static func openFile(_ path: String) throws(CaptureError) -> CaptureHandle {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let file = fopen(path, "rb") else {
            throw CaptureError(.open, "\(path): \(String(cString: strerror(errno)))", offset: 0)
        }
        // libpcap reads each record with two small freads; stdio's default 4 KiB buffer made that a
        // read(2) every few dozen packets. 64 KiB makes it one per few hundred and still fits the core's
        // L2 cache, where libpcap copies it out again: 1 MiB was 1 ms slower on a 17 MB file.
        let buffer = malloc(Self.fileBufferBytes)
        if let buffer { setvbuf(file, buffer.assumingMemoryBound(to: CChar.self), _IOFBF, Self.fileBufferBytes) }
        // A handle is read by one thread at a time (the reader), so stdio's lock is dropped.
        cpcap_unlocked_file(file)
        guard let p = pcap_fopen_offline_with_tstamp_precision(file, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            fclose(file)  // libpcap leaves a FILE it could not use to its caller
            free(buffer)
            throw CaptureError(.open, "\(path): \(Self.text(errbuf))", offset: 0)
        }
        return CaptureHandle(handle: p, source: path, isLive: false, fileBuffer: buffer)
    }

    /// libpcap's NUL-terminated error buffer as text.
    static func text(_ errbuf: [CChar]) -> String {
        String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Opens a live capture with the header-only snaplen. `snaplen` above ``HeaderLimits/liveCaptureBytes``
    /// is refused: a longer capture would put payload into the agent's memory.
    public static func openLive(interface: String, snaplen: Int = HeaderLimits.liveCaptureBytes, immediate: Bool, bufferBytes: Int,
                                filter: String?) throws(CaptureError) -> CaptureHandle {
        guard snaplen > 0, snaplen <= HeaderLimits.liveCaptureBytes else {
            throw CaptureError(.configuration, "capture snaplen \(snaplen) is above the header maximum \(HeaderLimits.liveCaptureBytes) bytes: it would capture payload")
        }
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let p = pcap_create(interface, &errbuf) else {
            throw CaptureError(.open, "\(interface): \(Self.text(errbuf))")
        }
        func fail(_ what: String) -> CaptureError {
            let text = String(cString: pcap_geterr(p))
            pcap_close(p)
            return CaptureError(.open, "\(interface): \(what): \(text)")
        }
        guard pcap_set_snaplen(p, Int32(snaplen)) == 0 else { throw fail("cannot set snaplen") }
        guard pcap_set_promisc(p, 0) == 0 else { throw fail("cannot disable promiscuous mode") }
        guard pcap_set_immediate_mode(p, immediate ? 1 : 0) == 0 else { throw fail("cannot set immediate mode") }
        guard pcap_set_buffer_size(p, Int32(bufferBytes)) == 0 else { throw fail("cannot set buffer size") }
        // A read timeout lets the capture thread see a stop request.
        guard pcap_set_timeout(p, 200) == 0 else { throw fail("cannot set timeout") }
        let rc = pcap_activate(p)
        guard rc >= 0 else { throw fail("cannot activate capture (\(rc))") }
        let capture = CaptureHandle(handle: p, source: interface, isLive: true)
        if let filter { try capture.setFilter(filter) }
        return capture
    }

    private static let fileBufferBytes = 64 << 10
    /// The stdio buffer of an offline file: freed after `pcap_close` has closed the file.
    private let fileBuffer: UnsafeMutableRawPointer?

    private init(handle: OpaquePointer, source: String, isLive: Bool, fileBuffer: UnsafeMutableRawPointer? = nil) {
        self.handle = handle
        self.fileBuffer = fileBuffer
        self.source = source
        self.isLive = isLive
        self.linkType = pcap_datalink(handle)
    }

    deinit {
        pcap_close(handle)
        free(fileBuffer)
    }

    /// The snaplen in effect on the handle (what the kernel truncates to for a live capture).
    public var snaplen: Int { Int(pcap_snapshot(handle)) }

    public func setFilter(_ expression: String) throws(CaptureError) {
        var program = bpf_program()
        guard pcap_compile(handle, &program, expression, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw CaptureError(.filter, "\(source): BPF filter \"\(expression)\": \(String(cString: pcap_geterr(handle)))")
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            throw CaptureError(.filter, "\(source): cannot install BPF filter: \(String(cString: pcap_geterr(handle)))")
        }
    }

    /// Packets the kernel dropped for lack of buffer, and dropped by the interface (live only).
    public func kernelDrops() -> (dropped: UInt32, interfaceDropped: UInt32)? {
        guard isLive else { return nil }
        var stats = pcap_stat()
        guard pcap_stats(handle, &stats) == 0 else { return nil }
        return (stats.ps_drop, stats.ps_ifdrop)
    }

    public enum ReadOutcome { case packet, timeout, end }

    /// Reads the next packet and hands it to `body` as metadata plus a header-only view. `.timeout` on a
    /// live capture's read timeout, `.end` at the end of a file. A corrupt or truncated file throws
    /// with the byte offset of the bad record.
    @discardableResult
    public func next(_ body: (PacketMeta, inout HeaderView) -> Void) throws(CaptureError) -> ReadOutcome {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let rc = pcap_next_ex(handle, &header, &data)
        switch rc {
        case 1:
            guard let header, let data else { return .timeout }
            frames += 1
            let h = header.pointee
            let fraction = Int64(h.ts.tv_usec) * (isLive ? 1000 : 1)  // tv_usec holds nanoseconds for NANO files
            let meta = PacketMeta(timestampNanoseconds: Int64(h.ts.tv_sec) &* 1_000_000_000 &+ fraction,
                                  originalLength: Int(h.len), capturedLength: Int(h.caplen), frameNumber: frames)
            var view = HeaderView(base: UnsafeRawPointer(data), capturedLength: Int(h.caplen))
            body(meta, &view)
            return .packet
        case 0:
            return .timeout
        case PCAP_ERROR_BREAK:
            return .end
        default:
            // Where reading stopped (asked only on failure: an ftell per packet costs a system call).
            let offset = isLive ? nil : Int(cpcap_file_offset(handle))
            let text = String(cString: pcap_geterr(handle))
            throw CaptureError(.read, "\(source): \(text) after \(frames) packet(s)", offset: offset.flatMap { $0 >= 0 ? $0 : nil })
        }
    }

    /// Makes a blocked `next` return (`pcap_breakloop`), from another thread.
    public func breakLoop() { pcap_breakloop(handle) }
}
