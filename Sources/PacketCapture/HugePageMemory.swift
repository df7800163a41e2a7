#if canImport(Glibc)
import Glibc
#endif

/// A fixed block of anonymous memory for a large table that lives as long as its owner (the flow table,
/// the reader's batches): mapped on its own, aligned to a transparent huge page and asked for huge pages
/// when it spans one (`MADV_HUGEPAGE`). A 5.5 MB block is then three page faults instead of 1,400, and
/// three mappings to tear down instead of 1,400: on `analyze` of a 57,000-packet capture the reader's
/// small-page faults were a tenth of its time. Where the kernel gives no huge pages (THP off), it is
/// small pages as before. The memory is zero until written; the owner frees it with ``release()``.
public struct HugePageMemory: @unchecked Sendable {
    /// Transparent huge page size on x86-64 and arm64 (4 KiB granule).
    public static let hugePageBytes = 2 << 20

    /// The usable block: `bytes` long, aligned to a huge page when it spans one.
    public let base: UnsafeMutableRawPointer
    public let bytes: Int
    /// The mapping (it starts before `base` when the block was aligned), or nil when the block came from
    /// the allocator (mmap refused).
    private let mapping: (start: UnsafeMutableRawPointer, bytes: Int)?

    /// Maps `bytes`. With `populate` a block smaller than a huge page is made resident by mmap itself
    /// (`MAP_POPULATE`); larger blocks are made resident by ``populate(touching:)`` or by first use.
    public init(bytes: Int, populate: Bool = false) {
        precondition(bytes > 0)
        self.bytes = bytes
        let huge = bytes >= Self.hugePageBytes
        let length = huge ? bytes + Self.hugePageBytes : bytes
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
        _ = madvise(base, bytes, MADV_HUGEPAGE)
    }

    /// Whether the block is a mapping of its own (false: it came from the allocator, already resident).
    public var isMapped: Bool { mapping != nil }

    /// Makes the block resident. `MADV_POPULATE_WRITE` (Linux 5.14) faults the pages in without changing
    /// a byte, so it may run on another thread while the owner writes the block; where it is missing,
    /// `touching` stores a zero in each page instead, which only the owner may do, before use.
    public func populate(touching: Bool) {
        guard mapping != nil else { return }
        if madvise(base, bytes, MADV_POPULATE_WRITE) == 0 || !touching { return }
        for offset in stride(from: 0, to: bytes, by: 4096) { base.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self) }
    }

    /// Unmaps (or frees) the block. Called once, by the owner, when nothing uses it any more.
    public func release() {
        if let mapping { munmap(mapping.start, mapping.bytes) } else { base.deallocate() }
    }
}
