import ArgumentParser
import PacketCapture
import Testing
@testable import meetpunt_agent

/// `analyze` reads its usual arguments without ArgumentParser (``AnalyzeCommand/quickParse(_:)``); these
/// hold the two readers to the same options, including options added later.
@Suite struct AnalyzeQuickParseTests {
    /// The names of a value's stored properties (a property wrapper's storage is `_name`).
    static func names(_ value: Any) -> [String] {
        Mirror(reflecting: value).children.map { label in
            let name = label.label ?? "?"
            return name.hasPrefix("_") ? String(name.dropFirst()) : name
        }
    }

    /// A new option of the command that ``AnalyzeCommand/Options`` lacks (and so neither reader would hand
    /// to the analysis) fails here.
    @Test func theOptionsHoldEveryPropertyOfTheCommand() throws {
        let parsed = try AnalyzeCommand.parse(["x.pcap"])
        #expect(Self.names(parsed) == Self.names(parsed.options))
    }

    @Test(arguments: [
        ["x.pcap"],
        ["--json", "x.pcap"],
        ["x.pcap", "--json", "--timing"],
        ["--timing", "--no-streams", "captures/a b.pcapng"],
        ["-c", "/etc/meetpunt/agent.yaml", "x.pcap"],
        ["--config", "agent.yaml", "--window-seconds", "300", "x.pcap"],
        ["--max-flows", "64", "x.pcap", "--window-seconds", "1"],
        ["--max-flows", "1048576", "--trace-tcp", "x.pcap"],
        ["x.pcap", "--max-flows", "+100"],
    ])
    func theUsualArgumentsReadAsArgumentParserReadsThem(_ arguments: [String]) throws {
        let quick = try #require(AnalyzeCommand.quickParse(arguments), "the usual arguments take the quick path")
        let parsed = try AnalyzeCommand.parse(arguments)
        #expect(quick == parsed.options)
    }

    /// Help, spellings the quick reader does not know, repeats and values that do not parse or validate
    /// go to ArgumentParser, which words the error or the help as it always has.
    @Test(arguments: [
        [], ["--help"], ["-h"], ["x.pcap", "--help"], ["x.pcap", "y.pcap"], ["--json", "--json", "x.pcap"],
        ["--max-flows=100", "x.pcap"], ["--max-flows", "3", "x.pcap"], ["--max-flows", "many", "x.pcap"],
        ["--window-seconds", "0", "x.pcap"], ["--window-seconds", "-5", "x.pcap"], ["-c"], ["x.pcap", "--config"],
        ["--version", "x.pcap"], ["--", "x.pcap"], ["-", "x.pcap"], ["--unknown", "x.pcap"], ["-cagent.yaml", "x.pcap"],
    ])
    func everythingElseTakesArgumentParsersPath(_ arguments: [String]) {
        #expect(AnalyzeCommand.quickParse(arguments) == nil)
    }

    @Test func transportLabelsAreTheCaseNames() {
        for t in [TransportProtocol.tcp, .udp, .icmp, .other] { #expect(t.label == "\(t)") }
    }
}
