/// The part of an agent's configuration the collector may set remotely (check-in): sampling intervals and
/// which polled samplers run. Both ends validate it with the same rules. Absent fields keep the agent's
/// local value. Capture is not switched remotely: it needs privileges and a restart.
///
/// JSON: `{"sampling": {"interval_seconds": 10, "window_seconds": 60}, "samplers": {"wifi": false}}`
public struct AgentSettings: Codable, Sendable, Equatable {
    public var intervalSeconds: Int?
    public var windowSeconds: Int?
    /// Sampler name → enabled; names from ``samplerNames``.
    public var samplers: [String: Bool]

    public static let samplerNames: Set<String> = ["link", "lan_clients", "wifi", "health"]

    public init(intervalSeconds: Int? = nil, windowSeconds: Int? = nil, samplers: [String: Bool] = [:]) {
        self.intervalSeconds = intervalSeconds
        self.windowSeconds = windowSeconds
        self.samplers = samplers
    }

    /// What is wrong with these settings on an agent whose local sampling is `interval`/`window`, as a
    /// JSON path and a message; nil when they can be applied.
    public func violation(localInterval: Int, localWindow: Int) -> (path: String, message: String)? {
        if let i = intervalSeconds, !(1...3600).contains(i) { return ("sampling.interval_seconds", "\(i) is out of range; valid: 1...3600") }
        if let w = windowSeconds, !(1...3600).contains(w) { return ("sampling.window_seconds", "\(w) is out of range; valid: 1...3600") }
        let i = intervalSeconds ?? localInterval, w = windowSeconds ?? localWindow
        if w < i || w % i != 0 { return ("sampling.window_seconds", "\(w) must be a whole multiple of sampling.interval_seconds (\(i))") }
        for name in samplers.keys.sorted() where !Self.samplerNames.contains(name) {
            return ("samplers.\(name)", "unknown sampler; valid: \(Self.samplerNames.sorted().joined(separator: ", "))")
        }
        return nil
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Unknown keys are errors, not ignored: a misspelt setting must not look applied.
    public init(from decoder: any Decoder) throws {
        let top = try decoder.container(keyedBy: Key.self)
        for k in top.allKeys where !["sampling", "samplers"].contains(k.stringValue) {
            throw DecodingError.dataCorruptedError(forKey: k, in: top, debugDescription: "unknown key \(k.stringValue); valid: sampling, samplers")
        }
        if top.contains(Key("sampling")) {
            let s = try top.nestedContainer(keyedBy: Key.self, forKey: Key("sampling"))
            for k in s.allKeys where !["interval_seconds", "window_seconds"].contains(k.stringValue) {
                throw DecodingError.dataCorruptedError(forKey: k, in: s, debugDescription: "unknown key sampling.\(k.stringValue); valid: interval_seconds, window_seconds")
            }
            intervalSeconds = try s.decodeIfPresent(Int.self, forKey: Key("interval_seconds"))
            windowSeconds = try s.decodeIfPresent(Int.self, forKey: Key("window_seconds"))
        }
        samplers = try top.decodeIfPresent([String: Bool].self, forKey: Key("samplers")) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var top = encoder.container(keyedBy: Key.self)
        if intervalSeconds != nil || windowSeconds != nil {
            var s = top.nestedContainer(keyedBy: Key.self, forKey: Key("sampling"))
            try s.encodeIfPresent(intervalSeconds, forKey: Key("interval_seconds"))
            try s.encodeIfPresent(windowSeconds, forKey: Key("window_seconds"))
        }
        if !samplers.isEmpty { try top.encode(samplers, forKey: Key("samplers")) }
    }
}

/// A device's desired settings as the collector holds them: `GET /v1/config` answers with this.
public struct AgentSettingsDocument: Codable, Sendable, Equatable {
    public var device: String
    /// Grows by one with every change; acknowledgements carry it as `config_version`.
    public var version: UInt64
    public var settings: AgentSettings

    public init(device: String, version: UInt64, settings: AgentSettings) {
        self.device = device
        self.version = version
        self.settings = settings
    }
}
