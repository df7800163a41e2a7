import Glibc
@testable import meetpunt_agent
import PacketCapture
import Testing
import TrafficAnalysis

/// Whether this kernel has `MADV_POPULATE_WRITE`: without it `populate(touching: false)` leaves pages to
/// be faulted in by first use, by design.
private let kernelPopulates: Bool = {
    let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let page, page != MAP_FAILED else { return false }
    defer { munmap(page, 4096) }
    return madvise(page, 4096, MADV_POPULATE_WRITE) == 0
}()

/// `HugePageMemory` makes resident what it is asked to and no more: `analyze` populates only the first huge
/// page of its 8 MB flow table, and a capture with few conversations must not pay for the rest.
@Suite(.enabled(if: kernelPopulates, "needs MADV_POPULATE_WRITE (Linux 5.14)"))
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

        // What `analyze` asks for at start: the flow-table slots of one huge page.
        let flows = AnalyzeCommand.TableResidency.flowsAtStart
        memory.populate(touching: false, prefix: flows * TrafficAnalyzer.bytesPerFlow)
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
        #expect(Self.residentPages(memory).prefix(4).allSatisfy { $0 })
    }

    /// `analyze`'s first step is exactly the slots of one huge page, and its read-ahead ring two huge pages:
    /// a larger slot or record would take another, 2 MiB more for every run to clear
    /// (docs/benchmarks.md, "Input B, third pass").
    @Test func theFirstStepOfTheFlowTableIsOneHugePageAndTheRingTwo() {
        let flows = AnalyzeCommand.TableResidency.flowsAtStart
        #expect(flows * TrafficAnalyzer.bytesPerFlow <= HugePageMemory.hugePageBytes)
        #expect((flows + 1) * TrafficAnalyzer.bytesPerFlow > HugePageMemory.hugePageBytes)
        let stride = MemoryLayout<ParsedPacketPipeline.Record>.stride
        let ring = ParsedPacketPipeline.defaultBatchSize * ParsedPacketPipeline.defaultDepth * stride
        #expect(ring <= 2 * HugePageMemory.hugePageBytes, "the ring is \(ring) bytes (\(stride) per record)")
    }
}
