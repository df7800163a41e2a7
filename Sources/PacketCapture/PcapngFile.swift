#if canImport(Glibc)
import Glibc
#endif

/// A minimal pcapng reader for the files libpcap 1.10 refuses: interfaces with different snapshot
/// lengths or link types in one file (libpcap stops with "an interface has a snapshot length … different
/// from the first interface"). Reads Section Header, Interface Description, Enhanced and Simple Packet
/// blocks; skips every other block. Each packet comes with its own interface's link type. Bounded: a
/// block larger than 16 MiB is an error naming its offset.
public final class PcapngFile {
    private let file: UnsafeMutablePointer<FILE>
    public let path: String
    private var littleEndian = true
    private var interfaces: [(linkType: Int32, snaplen: Int, unitsPerSecond: Int64)] = []
    private var buffer: [UInt8] = []
    private var offset = 0
    private var frames = 0
    static let maxBlock = 16 << 20

    public init(path: String) throws(CaptureError) {
        guard let f = fopen(path, "rb") else {
            throw CaptureError(.open, "\(path): \(String(cString: strerror(errno)))", offset: 0)
        }
        file = f
        self.path = path
    }

    deinit { fclose(file) }

    /// Whether the file starts with a pcapng Section Header Block.
    public static func isPcapng(_ path: String) -> Bool {
        guard let f = fopen(path, "rb") else { return false }
        defer { fclose(f) }
        var magic: UInt32 = 0
        return fread(&magic, 4, 1, f) == 1 && magic == 0x0A0D_0D0A
    }

    private func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        let v = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
        return littleEndian ? v : v.byteSwapped
    }

    private func u16(_ b: [UInt8], _ i: Int) -> UInt16 {
        let v = UInt16(b[i]) | UInt16(b[i + 1]) << 8
        return littleEndian ? v : v.byteSwapped
    }

    /// Reads the next packet; `.end` at the end of the file.
    public func next(_ body: (PacketMeta, Int32, inout HeaderView) -> Void) throws(CaptureError) -> CaptureHandle.ReadOutcome {
        while true {
            let blockOffset = offset
            var head = [UInt8](repeating: 0, count: 8)
            let got = fread(&head, 1, 8, file)
            if got == 0 { return .end }
            guard got == 8 else { throw CaptureError(.read, "\(path): truncated block header", offset: blockOffset) }
            let rawType = UInt32(head[0]) | UInt32(head[1]) << 8 | UInt32(head[2]) << 16 | UInt32(head[3]) << 24
            if rawType == 0x0A0D_0D0A {
                // Section header: the byte-order magic that follows decides endianness for the section.
                var magic = [UInt8](repeating: 0, count: 4)
                guard fread(&magic, 1, 4, file) == 4 else { throw CaptureError(.read, "\(path): truncated section header", offset: blockOffset) }
                littleEndian = magic == [0x4D, 0x3C, 0x2B, 0x1A]
                guard littleEndian || magic == [0x1A, 0x2B, 0x3C, 0x4D] else {
                    throw CaptureError(.read, "\(path): bad byte-order magic in section header", offset: blockOffset)
                }
                interfaces = []
                let length = Int(u32(head, 4))
                guard length >= 28, length <= Self.maxBlock, length % 4 == 0 else {
                    throw CaptureError(.read, "\(path): section header length \(length) is invalid", offset: blockOffset)
                }
                guard fseek(file, length - 12, SEEK_CUR) == 0 else { throw CaptureError(.read, "\(path): truncated section header", offset: blockOffset) }
                offset += length
                continue
            }
            let type = u32(head, 0), length = Int(u32(head, 4))
            guard length >= 12, length <= Self.maxBlock, length % 4 == 0 else {
                throw CaptureError(.read, "\(path): block length \(length) is invalid", offset: blockOffset)
            }
            buffer = [UInt8](repeating: 0, count: length - 8)
            guard fread(&buffer, 1, length - 8, file) == length - 8 else {
                throw CaptureError(.read, "\(path): truncated block of \(length) bytes", offset: blockOffset)
            }
            offset += length
            let bodyLength = buffer.count - 4  // without the trailing length
            switch type {
            case 1:  // Interface Description
                guard bodyLength >= 8 else { throw CaptureError(.read, "\(path): short interface block", offset: blockOffset) }
                var units: Int64 = 1_000_000
                var i = 8
                while i + 4 <= bodyLength {
                    let code = u16(buffer, i), len = Int(u16(buffer, i + 2))
                    if code == 0 { break }
                    if code == 9, len >= 1, i + 4 < bodyLength {
                        let r = buffer[i + 4]
                        units = 1
                        for _ in 0..<Int(r & 0x7F) { units = r & 0x80 != 0 ? units * 2 : units * 10; if units > 1_000_000_000_000 { break } }
                    }
                    i += 4 + ((len + 3) & ~3)
                }
                interfaces.append((Int32(u16(buffer, 0)), Int(u32(buffer, 4)), units))
            case 6, 3:  // Enhanced / Simple Packet
                let enhanced = type == 6
                guard bodyLength >= (enhanced ? 20 : 4) else { throw CaptureError(.read, "\(path): short packet block", offset: blockOffset) }
                let interface = enhanced ? Int(u32(buffer, 0)) : 0
                guard interface < interfaces.count else {
                    throw CaptureError(.read, "\(path): packet names interface \(interface), \(interfaces.count) described", offset: blockOffset)
                }
                let info = interfaces[interface]
                let original = Int(u32(buffer, enhanced ? 16 : 0))
                let dataStart = enhanced ? 20 : 4
                var captured = enhanced ? Int(u32(buffer, 12)) : min(original, info.snaplen == 0 ? original : info.snaplen)
                captured = min(captured, bodyLength - dataStart)
                var nanoseconds: Int64 = 0
                if enhanced {
                    let ticks = Int64(u32(buffer, 4)) << 32 | Int64(u32(buffer, 8))
                    let seconds = ticks / info.unitsPerSecond, rest = ticks % info.unitsPerSecond
                    nanoseconds = seconds &* 1_000_000_000 &+ rest &* 1_000_000_000 / info.unitsPerSecond
                }
                frames += 1
                let meta = PacketMeta(timestampNanoseconds: nanoseconds, originalLength: original, capturedLength: max(0, captured),
                                      frameNumber: frames)
                buffer.withUnsafeBytes { raw in
                    var view = HeaderView(base: raw.baseAddress! + dataStart, capturedLength: max(0, captured))
                    body(meta, info.linkType, &view)
                }
                return .packet
            default:
                continue  // statistics, name resolution, custom blocks: not needed
            }
        }
    }
}
