import Glibc
@testable import PacketCapture
import Testing

/// `HugePageMemory` makes resident what it is asked to and no more: `analyze` populates only the first huge
/// page of its 8 MB flow table, and a capture with few conversations must not pay for the rest.
struct HugePageMemoryTests {
    /// Which of the block's 4 KiB pages are resident, by `mincore`.
    static func residentPages(_ memory: borrowing HugePageMemory) -> [Bool] {
        let pages = (memory.bytes + 4095) / 4096
        var vector = [UInt8](repeating: 0, count: pages)
        let rc = vector.withUnsafeMutableBufferPointer { mincore(memory.base, memory.bytes, $0.baseAddress) }
        #expect(rc == 0, "mincore: errno \(errno)")
        return vector.map { $0 & 1 == 1 }
    }

    @Test func aPrefixOfABlockOfHugePagesIsMadeResidentInWholeHugePagesAndNoMore() {
        let memory = HugePageMemory(bytes: 4 * HugePageMemory.hugePageBytes - 1000)
        #expect(Int(bitPattern: memory.base) % HugePageMemory.hugePageBytes == 0, "aligned to a huge page")
        #expect(Self.residentPages(memory).filter { $0 }.isEmpty, "nothing resident before populate")

        // 4,096 slots of 488 bytes: just under one huge page, so one huge page (512 small ones).
        memory.populate(touching: false, prefix: 4096 * 488)
        let afterPrefix = Self.residentPages(memory)
        #expect(afterPrefix.prefix(512).allSatisfy { $0 }, "the first huge page is resident")
        #expect(afterPrefix.dropFirst(512).filter { $0 }.count == 0, "nothing past the first huge page")

        // One byte past the first huge page takes the second whole.
        memory.populate(touching: false, prefix: HugePageMemory.hugePageBytes + 1)
        #expect(Self.residentPages(memory).filter { $0 }.count == 1024)

        memory.populate(touching: false)
        #expect(Self.residentPages(memory).allSatisfy { $0 }, "the whole block")
    }

    @Test func aSmallBlockIsMadeResidentToThePageThatHoldsThePrefix() {
        let memory = HugePageMemory(bytes: 64 * 4096)
        memory.populate(touching: true, prefix: 3 * 4096 + 1)
        let resident = Self.residentPages(memory)
        #expect(resident.prefix(4).allSatisfy { $0 })
        #expect(resident.dropFirst(4).filter { $0 }.count == 0)
        // Resident memory reads as zero: populating stores nothing.
        #expect((0..<(4 * 4096)).allSatisfy { memory.base.load(fromByteOffset: $0, as: UInt8.self) == 0 })
    }

    /// The reader's default ring is two huge pages: a larger parsed record would take a third, 2 MiB more
    /// for every `analyze` to clear (docs/benchmarks.md, "Input B, third pass").
    @Test func theDefaultReadAheadRingFitsInTwoHugePages() {
        let stride = MemoryLayout<ParsedPacketPipeline.Record>.stride
        let ring = ParsedPacketPipeline.defaultBatchSize * ParsedPacketPipeline.defaultDepth * stride
        #expect(ring <= 2 * HugePageMemory.hugePageBytes, "the ring is \(ring) bytes (\(stride) per record)")
    }
}
