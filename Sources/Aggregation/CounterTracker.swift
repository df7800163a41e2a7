/// Turns successive readings of monotonic 64-bit counters into per-interval deltas and rates, safely across
/// counter resets.
///
/// A reset is detected when the source's generation changes (an interface deleted and re-created gets a
/// new ifindex) or when any counter goes backwards (a driver reset). A reset interval yields no delta and
/// no rate — the baseline is re-taken — because the time the new counters started from zero is unknown:
/// reporting the post-reset value as a delta could attribute hours of traffic to one interval. Unsigned
/// subtraction is never done on a smaller current value, so a delta is never negative or near 2^64.
public struct CounterTracker<Key: Hashable & Sendable>: Sendable {
    public struct Reading: Sendable {
        public var generation: Int64
        public var counters: [UInt64]
        /// Monotonic time of the reading, nanoseconds.
        public var monotonicNanoseconds: UInt64
        public init(generation: Int64, counters: [UInt64], monotonicNanoseconds: UInt64) {
            self.generation = generation
            self.counters = counters
            self.monotonicNanoseconds = monotonicNanoseconds
        }
    }

    public enum Outcome: Sendable, Equatable {
        /// First reading for this key: a baseline, nothing to report.
        case baseline
        /// Counters reset (or the source was re-created); baseline re-taken, nothing to report.
        case reset
        /// Deltas per counter over `seconds` of monotonic time.
        case delta([UInt64], seconds: Double)
    }

    private var previous: [Key: Reading] = [:]
    /// Bound on tracked keys, so a flapping source that creates names without end cannot grow memory.
    public let maxKeys: Int

    public init(maxKeys: Int = 1024) {
        self.maxKeys = maxKeys
    }

    public mutating func update(_ key: Key, _ reading: Reading) -> Outcome {
        defer {
            if previous[key] != nil || previous.count < maxKeys { previous[key] = reading }
        }
        guard let before = previous[key] else { return .baseline }
        guard before.generation == reading.generation, before.counters.count == reading.counters.count,
              reading.monotonicNanoseconds > before.monotonicNanoseconds else { return .reset }
        var deltas: [UInt64] = []
        deltas.reserveCapacity(reading.counters.count)
        for (old, new) in zip(before.counters, reading.counters) {
            guard new >= old else { return .reset }
            deltas.append(new - old)
        }
        return .delta(deltas, seconds: Double(reading.monotonicNanoseconds - before.monotonicNanoseconds) / 1e9)
    }

    /// Forgets keys not in `present` (interfaces that disappeared).
    public mutating func retain(only present: Set<Key>) {
        previous = previous.filter { present.contains($0.key) }
    }
}
