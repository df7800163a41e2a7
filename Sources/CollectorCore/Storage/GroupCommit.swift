import TelemetryModel

/// Leader-based group commit. The first caller to find no write in progress becomes the writer: it
/// takes everything pending (its own reports and any that arrive while it waits), writes it in one
/// transaction, hands each caller its outcomes, and goes on while more is pending. A report is
/// acknowledged only after the transaction holding it committed; if the transaction fails, every
/// caller in it gets the error and nothing of it is stored. At most `maxReports` reports per
/// transaction; waiting callers are bounded by the server's concurrent requests.
actor GroupCommit {
    typealias Entry = (report: Report, classes: [DataClass], receivedAtMs: Int64)
    private var pending: [(entries: [Entry], continuation: CheckedContinuation<[IngestOutcome], any Error>?)] = []
    private var writing = false
    let maxReports = 256

    func submit(_ entries: [Entry], write: @Sendable ([Entry]) async throws -> [IngestOutcome]) async throws -> [IngestOutcome] {
        if writing {
            return try await withCheckedThrowingContinuation { pending.append((entries, $0)) }
        }
        writing = true
        defer { writing = false }
        pending.insert((entries, nil), at: 0)
        var mine: Result<[IngestOutcome], any Error>?
        while !pending.isEmpty {
            var take = 0, count = 0
            while take < pending.count, take == 0 || count + pending[take].entries.count <= maxReports {
                count += pending[take].entries.count
                take += 1
            }
            let group = Array(pending.prefix(take))
            pending.removeFirst(take)
            let result: Result<[IngestOutcome], any Error>
            do { result = .success(try await write(group.flatMap(\.entries))) } catch { result = .failure(error) }
            var offset = 0
            for g in group {
                let part = result.map { Array($0[offset..<(offset + g.entries.count)]) }
                offset += g.entries.count
                if let c = g.continuation { c.resume(with: part) } else { mine = part }
            }
        }
        return try mine!.get()
    }
}
