#if canImport(Glibc)
import Glibc
#endif

/// A fixed block of anonymous memory for a large table that lives as long as its owner (the flow table,
/// the reader's batches): mapped on its own, in whole transparent huge pages when it spans one (aligned
/// to 2 MiB, its length rounded up to 2 MiB, `MADV_HUGEPAGE`). The reader's 4.1 MB batch ring is then
/// two page faults instead of 1,000, and two page-table entries to tear down: on `analyze` of a
/// 57,000-packet capture its small-page faults were a tenth of the reader's time. Where the kernel gives
/// no huge pages (THP off), it is small pages as before. The memory is zero until written, and unmapped
/// when the owner goes (one owner: not copyable).
public struct HugePageMemory: ~Copyable {
    /// Transparent huge page size on x86-64 and arm64 (4 KiB granule).
    public static let hugePageBytes = 2 << 20

    /// The usable block, at least `bytes` long, aligned to a huge page when it spans one.
    public let base: UnsafeMutableRawPointer
    public let bytes: Int
    /// The mapping (it starts before `base` when the block was aligned), or nil when the block came from
    /// the allocator (mmap refused).
    private let mapping: (start: UnsafeMutableRawPointer, bytes: Int)?

    /// Maps `bytes`. With `populate` a block smaller than a huge page is made resident by mmap itself
    /// (`MAP_POPULATE`); larger blocks are made resident by ``populate(touching:prefix:)`` or by first use.
    public init(bytes: Int, populate: Bool = false) {
        precondition(bytes > 0)
        self.bytes = bytes
        let huge = bytes >= Self.hugePageBytes
        // A huge page must lie whole inside the advised range: the range is the block rounded up to whole
        // huge pages (advising just `bytes` left the block's tail in small pages), and the mapping has a
        // huge page more to align it.
        let advised = huge ? (bytes + Self.hugePageBytes - 1) / Self.hugePageBytes * Self.hugePageBytes : bytes
        let length = huge ? advised + Self.hugePageBytes : bytes
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | (huge || !populate ? 0 : MAP_POPULATE)
        guard let start = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0), start != MAP_FAILED else {
            // Zeroed like a mapping, and resident at once.
            base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            mapping = nil
            return
        }
        mapping = (start, length)
        guard huge else { base = start; return }
        let misalignment = Int(bitPattern: start) % Self.hugePageBytes
        base = start + (misalignment == 0 ? 0 : Self.hugePageBytes - misalignment)
        // Advice: without huge pages (THP off) the block stays in small pages.
        _ = madvise(base, advised, MADV_HUGEPAGE)
    }

    deinit {
        if let mapping { munmap(mapping.start, mapping.bytes) } else { base.deallocate() }
    }

    /// Whether the block is a mapping of its own (false: it came from the allocator, already resident).
    public var isMapped: Bool { mapping != nil }

    /// Makes the block resident, or its first `prefix` bytes (rounded up to whole huge pages when the
    /// block spans one). `MADV_POPULATE_WRITE` (Linux 5.14) faults the pages in without changing a byte,
    /// so it may run on another thread while the owner writes the block; where it is missing, `touching`
    /// stores a zero in each page instead, which only the owner may do, before use.
    public func populate(touching: Bool, prefix: Int? = nil) {
        guard mapping != nil else { return }
        var length = bytes
        if let prefix {
            let whole = bytes >= Self.hugePageBytes ? (prefix + Self.hugePageBytes - 1) / Self.hugePageBytes * Self.hugePageBytes : prefix
            length = min(bytes, max(0, whole))
        }
        guard length > 0 else { return }
        if madvise(base, length, MADV_POPULATE_WRITE) == 0 || !touching { return }
        for offset in stride(from: 0, to: length, by: 4096) { base.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self) }
    }
}
