import Pseudonymisation

/// Where the agent reads time. Windows run on the monotonic clock; the wall clock only dates them, and
/// only once it is plausible (``WallClockAnchor``). Tests inject a wall clock that starts in 1970.
public struct AgentClock: Sendable {
    public let now: @Sendable () -> SampleTime
    public init(now: @escaping @Sendable () -> SampleTime) { self.now = now }
    public static let system = AgentClock { SampleTime.now() }
}

/// The key epoch a sample's pseudonyms use. A wall clock below the floor (a router without an RTC, booted
/// in 1970) counts as the floor, so pseudonyms never come from an epoch decades old.
public struct EpochRule: Sendable {
    public let lengthSeconds: Int64
    public let floorMilliseconds: Int64
    public init(lengthSeconds: Int64, floorMilliseconds: Int64) {
        self.lengthSeconds = lengthSeconds
        self.floorMilliseconds = floorMilliseconds
    }
    public func epoch(at time: SampleTime) -> KeyEpoch {
        KeyEpoch.containing(unixSeconds: max(time.wallMilliseconds, floorMilliseconds) / 1000, lengthSeconds: lengthSeconds)
    }
}

/// Maps monotonic instants to wall-clock time once the wall clock can be believed. Pure.
///
/// A reading is plausible when the wall clock is at or past `floorMilliseconds`. The offset (wall −
/// monotonic) follows every plausible reading, so NTP's slewing is tracked; a change of more than
/// `stepThresholdMilliseconds` between two plausible readings is a step, returned so it can be reported.
/// Implausible readings (the clock fell back to 1970) leave the last offset in place.
public struct WallClockAnchor: Sendable {
    public let floorMilliseconds: Int64
    public let stepThresholdMilliseconds: Int64
    /// Wall minus monotonic, in ms, from the last plausible reading; nil until there was one.
    public private(set) var offsetMilliseconds: Int64?

    public init(floorMilliseconds: Int64, stepThresholdMilliseconds: Int64 = 1000) {
        self.floorMilliseconds = floorMilliseconds
        self.stepThresholdMilliseconds = stepThresholdMilliseconds
    }

    /// Takes one reading; returns the step (ms, signed) when the wall clock jumped since the last one.
    public mutating func observe(_ time: SampleTime) -> Int64? {
        guard time.wallMilliseconds >= floorMilliseconds else { return nil }
        let offset = time.wallMilliseconds - Int64(time.monotonicNanoseconds / 1_000_000)
        defer { offsetMilliseconds = offset }
        guard let previous = offsetMilliseconds, abs(offset - previous) > stepThresholdMilliseconds else { return nil }
        return offset - previous
    }

    /// Wall-clock ms of a monotonic instant (µs), or nil while no plausible reading was seen.
    public func wallMilliseconds(monotonicMicroseconds: Int64) -> Int64? {
        offsetMilliseconds.map { $0 + monotonicMicroseconds / 1000 }
    }
}
