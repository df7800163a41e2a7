#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Reading and header parsing on one thread, analysis on the caller's: `analyze FILE` keeps two cores
/// busy where the live agent has one capture thread per interface.
///
/// The reader fills fixed batches of parsed records (``depth`` × ``batchSize``, allocated once: a
/// bounded hand-off, never a growing queue) and the caller consumes them in capture order. Only parsed
/// header fields cross the threads; the packet bytes stay in the reader's `HeaderView`.
public enum ParsedPacketPipeline {
    /// One packet, parsed: its metadata, the link type it came with, and its headers or why it was skipped.
    public struct Record: Sendable {
        public var meta: PacketMeta
        public var linkType: Int32
        public var headers: PacketHeaders
        public var skip: SkipReason?

        static let blank = Record(meta: PacketMeta(timestampNanoseconds: 0, originalLength: 0, capturedLength: 0, frameNumber: 0),
                                  linkType: 0, headers: PacketHeaders(), skip: nil)
    }

    /// Hands each packet the reader gets to the parser; the reader calls it for every packet it reads.
    public typealias Emit = (PacketMeta, Int32, inout HeaderView) -> Void

    /// How a run ended: the error `read` threw, if it did (after the records read before it were
    /// consumed), and the reader thread's CPU time in nanoseconds, whether or not it failed (nil when no
    /// thread could be started and the calling thread read, or the clock could not be read).
    public struct Outcome: Sendable {
        public var error: CaptureError?
        public var readerCPUNanoseconds: Int64?
    }

    /// Runs `read` on a new thread, handing it an `Emit` that parses each packet into the current batch,
    /// and calls `consume` for every record in order on the calling thread. Returns when `read` returns
    /// or throws and every record it emitted was consumed.
    ///
    /// `consume` gets the record where it lies in the batch, valid only during the call: copying each
    /// ~170-byte record out was a tenth of the consumer's time.
    ///
    /// The default ring holds 24,576 records of 168 bytes (4.1 MB: two huge pages, faulted in as it is first
    /// filled; a short capture still touches one, 2 MiB): the reader runs that far ahead while the
    /// analysing thread shares a core with the interval folder, where 8,192 made a small capture's run
    /// 1.5 ms slower (the reader waited, then woke, at every batch). 32,768 took a third huge page, 2 MiB
    /// more to clear, for no speed on either benchmark input (200 and 15 interleaved runs, 2026-12-03).
    public static let defaultBatchSize = 2048, defaultDepth = 12

    public static func run(batchSize: Int = defaultBatchSize, depth: Int = defaultDepth,
                           read: @escaping (Emit) throws(CaptureError) -> Void,
                           consume: (UnsafePointer<Record>) -> Void) -> Outcome {
        precondition(batchSize > 0 && depth > 1)
        let shared = Shared(batchSize: batchSize, depth: depth, read: read)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(shared).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Shared>.fromOpaque(raw!).takeRetainedValue().produce()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Shared>.fromOpaque(context).release()
            // No second thread: read and consume in turn on this one.
            var record = Record.blank
            do {
                try read { meta, linkType, view in
                    Self.parse(meta, linkType, &view, into: &record)
                    withUnsafePointer(to: &record) { consume($0) }
                }
            } catch {
                return Outcome(error: error, readerCPUNanoseconds: nil)
            }
            return Outcome(error: nil, readerCPUNanoseconds: nil)
        }
        var batch = 0
        while true {
            shared.filled.wait()
            let base = shared.records + batch * batchSize
            for i in 0..<shared.counts[batch] { consume(base + i) }
            let last = shared.ends[batch]
            shared.free.signal()
            if last { break }
            batch = (batch + 1) % depth
        }
        pthread_join(thread, nil)
        return Outcome(error: shared.error, readerCPUNanoseconds: shared.readerCPUNanoseconds)
    }

    /// Parses in place (a record is ~170 bytes: built elsewhere and copied in, the copy showed in profiles).
    @inline(__always) static func parse(_ meta: PacketMeta, _ linkType: Int32, _ view: inout HeaderView, into record: inout Record) {
        record.meta = meta
        record.linkType = linkType
        if PacketParser.supports(linkType: linkType) {
            record.skip = PacketParser.parse(linkType: linkType, view: &view, originalLength: meta.originalLength, into: &record.headers)
        } else {
            record.headers = PacketHeaders()  // never read when skipped, but never left as another packet's
            record.skip = .unsupportedLinkType
        }
    }

    /// The batches and the two semaphores that pass them back and forth: `filled` counts batches ready for
    /// the consumer, `free` batches the reader may fill. A batch is touched by one thread at a time.
    private final class Shared: @unchecked Sendable {
        let batchSize: Int
        let depth: Int
        let records: UnsafeMutablePointer<Record>
        private let memory: HugePageMemory
        let counts: UnsafeMutablePointer<Int>
        let ends: UnsafeMutablePointer<Bool>
        let free: DispatchSemaphore
        let filled = DispatchSemaphore(value: 0)
        let read: (Emit) throws(CaptureError) -> Void
        var error: CaptureError?
        /// Written by the reader as it ends, read after the join.
        var readerCPUNanoseconds: Int64?

        init(batchSize: Int, depth: Int, read: @escaping (Emit) throws(CaptureError) -> Void) {
            self.batchSize = batchSize
            self.depth = depth
            self.read = read
            // Plain memory, written before it is read: faulted in as the batches are first filled, in huge
            // pages (three faults for the default ring, where 1,400 small ones were a tenth of the reader's time).
            precondition(_isPOD(Record.self), "records are plain memory")
            memory = HugePageMemory(bytes: batchSize * depth * MemoryLayout<Record>.stride)
            records = memory.base.bindMemory(to: Record.self, capacity: batchSize * depth)
            counts = .allocate(capacity: depth)
            counts.initialize(repeating: 0, count: depth)
            ends = .allocate(capacity: depth)
            ends.initialize(repeating: false, count: depth)
            free = DispatchSemaphore(value: depth)
        }

        deinit {
            counts.deallocate()
            ends.deallocate()
        }

        /// The reader thread.
        func produce() {
            var batch = 0
            var n = 0
            free.wait()
            do {
                try read { meta, linkType, view in
                    ParsedPacketPipeline.parse(meta, linkType, &view, into: &self.records[batch * self.batchSize + n])
                    n += 1
                    if n == self.batchSize {
                        self.counts[batch] = n
                        self.ends[batch] = false
                        self.filled.signal()
                        batch = (batch + 1) % self.depth
                        n = 0
                        self.free.wait()
                    }
                }
            } catch {
                self.error = error
            }
            readerCPUNanoseconds = CPUTime.nanoseconds(CLOCK_THREAD_CPUTIME_ID)
            counts[batch] = n
            ends[batch] = true
            filled.signal()
        }
    }
}
