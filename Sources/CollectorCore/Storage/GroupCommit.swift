import TelemetryModel

/// Leader-based group commit. The first caller to find no write in progress becomes the writer: it
/// takes everything pending (its own reports and any that arrived while the last transaction ran),
/// writes it in one transaction and hands each caller its outcomes. A report is acknowledged only after
/// the transaction holding it committed; if the transaction fails, every caller in it gets the error and
/// nothing of it is stored. At most `maxReports` reports per transaction; waiting callers are bounded by
/// the server's concurrent requests.
///
/// A writer writes one transaction, the one holding its own reports, and then hands the writing to the
/// first caller still waiting. A writer that went on while anything was pending answered its own
/// request only when the queue ran dry, which under steady load could be many transactions later: a
/// load run on PostgreSQL had 0.7 % of its requests over 400 ms, spread evenly over the run, while no
/// statement took 150 ms.
actor GroupCommit {
    typealias Entry = (report: Report, classes: [DataClass], receivedAtMs: Int64)

    /// What a waiting caller is woken with: its outcomes, or its turn to write.
    private enum Turn {
        case done([IngestOutcome])
        case write
    }

    /// Callers whose reports are not written yet, in arrival order. The writer's own entry is first and
    /// has no continuation.
    private var pending: [(entries: [Entry], continuation: CheckedContinuation<Turn, any Error>?)] = []
    private var writing = false
    let maxReports = 256

    func submit(_ entries: [Entry], write: @Sendable ([Entry]) async throws -> [IngestOutcome]) async throws -> [IngestOutcome] {
        if writing {
            let turn = try await withCheckedThrowingContinuation { pending.append((entries, $0)) }
            if case .done(let outcomes) = turn { return outcomes }
            // Handed the writing: this caller's entry is first in `pending`, its continuation cleared.
        } else {
            writing = true
            pending.insert((entries, nil), at: 0)
        }
        var take = 0, count = 0
        while take < pending.count, take == 0 || count + pending[take].entries.count <= maxReports {
            count += pending[take].entries.count
            take += 1
        }
        let group = Array(pending.prefix(take))
        pending.removeFirst(take)
        let result: Result<[IngestOutcome], any Error>
        do { result = .success(try await write(group.flatMap(\.entries))) } catch { result = .failure(error) }
        var mine: Result<[IngestOutcome], any Error>?
        var offset = 0
        for g in group {
            let part = result.map { Array($0[offset..<(offset + g.entries.count)]) }
            offset += g.entries.count
            if let c = g.continuation { c.resume(with: part.map(Turn.done)) } else { mine = part }
        }
        if let next = pending.first?.continuation {
            pending[0].continuation = nil
            next.resume(returning: .write)
        } else {
            writing = false
        }
        return try mine!.get()
    }
}
