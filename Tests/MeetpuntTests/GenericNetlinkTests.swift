import Foundation
@testable import NetlinkKit
import Testing

/// The generic-netlink socket on this kernel's own `nlctrl` family (present everywhere, unlike nl80211):
/// a request followed by dumps on one socket must keep their replies apart. The Wi-Fi lab found a
/// request's stray acknowledgement ending the next dump early; this pins the fix without a radio.
@Suite struct GenericNetlinkTests {
    @Test func requestsAndDumpsOnOneSocketKeepTheirRepliesApart() throws {
        let socket = try #require(try GenericNetlinkSocket(family: "nlctrl"))
        // CTRL_CMD_GETFAMILY = 3, CTRL_ATTR_FAMILY_NAME = 2, CTRL_ATTR_FAMILY_ID = 1 (linux/genetlink.h)
        var dumped: Int?
        for round in 0..<4 {
            let reply = try socket.request(command: 3, stringAttribute: (2, "nlctrl"))
            #expect(reply.count == 1, "round \(round): one reply to a GETFAMILY request")
            #expect(reply.first?.attributes.u16(1) == 16, "nlctrl's family id is 16")
            let dump = try socket.dump(command: 3)
            #expect(dump.failure == nil && !dump.interrupted)
            let names = dump.messages.compactMap { $0.attributes.string(2) }
            #expect(names.contains("nlctrl"), "round \(round): the dump lists every family, nlctrl among them: \(names)")
            #expect(names.count == dump.messages.count)
            if let d = dumped { #expect(names.count == d, "round \(round): same dump every time") }
            dumped = names.count
        }
        #expect((dumped ?? 0) >= 2)
    }
}
