import Foundation
import Logging
import ServiceLifecycle
import TelemetryModel

/// One fleet aggregate: every series of one metric and cohort whose window ended in one time bucket,
/// merged across devices. Sums, extremes and sketches merge exactly, so fleet percentiles come from the
/// merged sketch (never an average of percentiles) with the sketch's relative-error guarantee.
public struct FleetCell: Sendable, Equatable {
    public struct Key: Hashable, Sendable, Comparable {
        public var metric: String
        /// The labels that say which kind of thing, never which one: only labels whose values are a fixed
        /// set (band, leg, method, direction…), as `key=value` joined by `,` in key order; "" for none.
        public var cohort: String
        public var bucketSeconds: Int
        public var bucketStartMs: Int64
        public static func < (a: Key, b: Key) -> Bool {
            (a.metric, a.cohort, a.bucketSeconds, a.bucketStartMs) < (b.metric, b.cohort, b.bucketSeconds, b.bucketStartMs)
        }
    }

    public var key: Key
    public var unit: String
    /// Reports that contributed (a device's report counts once per cell, however many series it merged).
    public var reports: Int
    public var count: Int
    public var sum: Double
    public var min: Double
    public var max: Double
    public var sketch: QuantileSketch?

    public mutating func merge(_ other: FleetCell) {
        // Saturating: a cell must never trap the collector, whatever reports it merges.
        reports = reports.saturatingAdd(other.reports)
        count = count.saturatingAdd(other.count)
        let total = sum + other.sum
        sum = total.isFinite ? total : (total > 0 ? .greatestFiniteMagnitude : -.greatestFiniteMagnitude)
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
        if let theirs = other.sketch {
            if sketch == nil {
                sketch = theirs
            } else {
                // In place (a copy would duplicate the buckets on every merge). Sketches of one metric share
                // α (the catalogue's); a mismatch is refused before anything changes and keeps ours rather
                // than fail ingest.
                try? sketch!.merge(theirs)
            }
        }
    }
}

/// Merges every stored report into fleet cells in memory and writes them to the store every few seconds
/// (and at shutdown) by adding to what is stored: several collector processes can each hold a part, and
/// the sum is right. A crash loses at most the unflushed interval of the aggregates, never raw data.
public actor FleetAggregator {
    public static let bucketSizesSeconds = [300, 3600]
    private var cells: [FleetCell.Key: FleetCell] = [:]
    /// Cells held in memory at most; past it a flush is due at once.
    let maxCells: Int

    public init(maxCells: Int = 50_000) { self.maxCells = maxCells }

    /// Per metric, its fixed-set labels in key order: the labels a cohort is made of.
    static let cohortLabels: [String: [String]] = Dictionary(uniqueKeysWithValues: MetricCatalog.all.map { d in
        (d.name, d.labels.compactMap { key, rule -> String? in
            guard case .oneOf = rule else { return nil }
            return key
        }.sorted())
    })

    /// The cohort of a series: its fixed-set labels only.
    public static func cohort(_ series: Series) -> String {
        guard !series.labels.isEmpty, let keys = cohortLabels[series.metric], !keys.isEmpty else { return "" }
        var cohort = ""
        for key in keys {
            guard let value = series.labels[key] else { continue }
            if !cohort.isEmpty { cohort += "," }
            cohort += key
            cohort += "="
            cohort += value
        }
        return cohort
    }

    /// Adds a stored report's series; returns whether a flush is due because the memory bound was reached.
    @discardableResult
    public func add(_ report: Report) -> Bool {
        // The report's series merged per metric and cohort first (a report counts once per cell), then
        // each group goes into one cell per bucket size.
        struct Group: Hashable {
            var metric: String
            var cohort: String
        }
        var groups: [Group: FleetCell] = [:]
        groups.reserveCapacity(report.series.count)
        for s in report.series {
            let group = Group(metric: s.metric, cohort: Self.cohort(s))
            let cell = FleetCell(key: FleetCell.Key(metric: s.metric, cohort: group.cohort, bucketSeconds: 0, bucketStartMs: 0), unit: s.unit,
                                 reports: 1, count: s.count, sum: s.sum, min: s.min, max: s.max, sketch: s.sketch)
            // Merged in place: a cell copied out of the dictionary and back copied its sketch's buckets.
            if let i = groups.index(forKey: group) {
                groups.values[i].merge(cell)
                groups.values[i].reports = 1
            } else {
                groups[group] = cell
            }
        }
        for var cell in groups.values {
            for size in Self.bucketSizesSeconds {
                let ms = Int64(size) * 1000
                cell.key.bucketSeconds = size
                cell.key.bucketStartMs = (report.windowEndMs - 1) / ms * ms
                if let i = cells.index(forKey: cell.key) {
                    cells.values[i].merge(cell)
                } else {
                    cells[cell.key] = cell
                }
            }
        }
        return cells.count >= maxCells
    }

    /// Hands over everything held and starts empty.
    public func take() -> [FleetCell] {
        defer { cells = [:] }
        return Array(cells.values)
    }

    /// Puts cells back after a failed flush, so the next one carries them.
    public func restore(_ back: [FleetCell]) {
        for c in back {
            if let i = cells.index(forKey: c.key) {
                cells.values[i].merge(c)
            } else {
                cells[c.key] = c
            }
        }
    }
}

/// Writes the aggregator's cells to the store every `interval`, and once more at shutdown. A failed
/// flush keeps the cells for the next and backs off; its log lines are at most one per interval.
public struct FleetFlushService: Service {
    let aggregator: FleetAggregator
    let store: any TelemetryStore
    let interval: Duration
    let logger: Logger

    public init(aggregator: FleetAggregator, store: any TelemetryStore, interval: Duration = .seconds(10), logger: Logger) {
        self.aggregator = aggregator
        self.store = store
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var pause = interval
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let wait = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            pause = await flushOnce() ? interval : min(pause * 2, .seconds(300))
        }
        _ = await flushOnce()
    }

    /// Writes what the aggregator holds; false when the store refused it (the cells are kept).
    @discardableResult
    public func flushOnce() async -> Bool {
        let cells = await aggregator.take()
        guard !cells.isEmpty else { return true }
        do {
            try await store.mergeFleet(cells)
            return true
        } catch {
            await aggregator.restore(cells)
            logger.error("fleet aggregates not written, will retry", metadata: ["cells": "\(cells.count)", "error": "\(error)"])
            return false
        }
    }
}
