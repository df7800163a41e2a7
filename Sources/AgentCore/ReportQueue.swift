/// A report ready to send: its identity and the gzip-compressed JSON body.
public struct EncodedReport: Sendable, Equatable {
    public let seq: UInt64
    public let windowEndMilliseconds: Int64
    public let gzipBody: [UInt8]
    public init(seq: UInt64, windowEndMilliseconds: Int64, gzipBody: [UInt8]) {
        self.seq = seq
        self.windowEndMilliseconds = windowEndMilliseconds
        self.gzipBody = gzipBody
    }
}

/// Where the pipeline puts reports and the shipper takes them from. The shipper does not own it: the
/// in-memory queue here is the first implementation, a durable on-disk spool slots in behind the same
/// protocol (the roadmap's durable delivery).
public protocol ReportQueue: Sendable {
    /// Appends `report`; when full, the oldest report is dropped and counted.
    func enqueue(_ report: EncodedReport) async
    /// The oldest undelivered report, waiting until there is one or `timeout` passes.
    func peek(timeout: Duration) async -> EncodedReport?
    /// Removes the report with `seq` after the collector acknowledged it.
    func acknowledge(seq: UInt64) async
    /// Reports dropped because the queue was full, since the last call (shipped as `agent.dropped_reports`).
    func takeDroppedCount() async -> Int
    var count: Int { get async }
}

/// A bounded in-memory FIFO. Reports are lost on restart; the durable spool replaces it.
public actor MemoryReportQueue: ReportQueue {
    private var items: [EncodedReport] = []
    private let capacity: Int
    private var dropped = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public func enqueue(_ report: EncodedReport) {
        if items.count >= capacity {
            items.removeFirst()
            dropped += 1
        }
        items.append(report)
    }

    public func peek(timeout: Duration) async -> EncodedReport? {
        let deadline = ContinuousClock.now + timeout
        while items.isEmpty {
            guard ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return items.first
    }

    public func acknowledge(seq: UInt64) {
        items.removeAll { $0.seq == seq }
    }

    public func takeDroppedCount() -> Int {
        defer { dropped = 0 }
        return dropped
    }

    public var count: Int { items.count }
}
