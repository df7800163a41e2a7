import CNetlink

/// A generic-netlink socket bound to one family, resolved once. Requests and multi-part dumps come back
/// as raw ``NetlinkMessage``s for the pure parsers.
///
/// Not `Sendable`: one sampler uses it from one thread at a time.
final class GenericNetlinkSocket {
    let socket: NetlinkSocket
    let familyID: Int32
    let familyName: String
    /// Dumps the kernel marked inconsistent (`NLM_F_DUMP_INTR`) and that were retried.
    private(set) var interruptedDumps = 0

    /// Nil when the family does not exist on this kernel (no cfg80211 loaded: a host without Wi-Fi).
    init?(family: String) throws(NetlinkError) {
        let s = try NetlinkSocket(netlinkProtocol: NETLINK_GENERIC)
        let id = genl_ctrl_resolve(s.handle, family)
        guard id >= 0 else { return nil }
        // No automatic NLM_F_ACK: a request answered by a reply *and* an acknowledgement would leave the
        // acknowledgement in the socket, and the next dump would read it as its own end (the Wi-Fi lab
        // caught this: a survey dump "ended" on GET_REG's ACK and the station dump then met EBUSY).
        // Commands that want an acknowledgement ask for it explicitly.
        nl_socket_disable_auto_ack(s.handle)
        socket = s
        familyID = id
        familyName = family
    }

    /// Collects every message of one reply (all parts of a dump) through libnl's VALID callback.
    private final class Collector {
        var messages: [NetlinkMessage] = []
        var interrupted = false
        var overflow = false
        let limit: Int
        init(limit: Int) { self.limit = limit }
    }

    /// One `NLM_F_DUMP` request. Retries up to `retries` times when the kernel flags the dump as
    /// interrupted (its object list changed while it was being written); after that the last, possibly
    /// incomplete, result is returned with `interrupted` set rather than nothing. At most `limit` messages
    /// are kept; the rest are read and dropped (`truncated`). A missing device or an unsupported command
    /// comes back as ``DumpReply/failure``; other errors throw.
    func dump(command: UInt8, ifindex: UInt32? = nil, limit: Int = 4096, retries: Int = 3) throws(NetlinkError) -> DumpReply {
        var attempt = 0
        while true {
            let collector: Collector
            do {
                collector = try exchange(command: command, flags: NLM_F_DUMP, ifindex: ifindex, limit: limit)
            } catch where error.code == .noSuchDevice {
                return DumpReply(messages: [], interrupted: false, truncated: false, failure: .noDevice)
            } catch where error.code == .notSupported {
                return DumpReply(messages: [], interrupted: false, truncated: false, failure: .notSupported)
            }
            if collector.interrupted && attempt < retries {
                attempt += 1
                interruptedDumps += 1
                continue
            }
            var reply = DumpReply.assemble(collector.messages)
            reply.interrupted = reply.interrupted || collector.interrupted
            reply.truncated = collector.overflow
            return reply
        }
    }

    /// A request that is not a dump; returns its reply messages.
    func request(command: UInt8, ifindex: UInt32? = nil, stringAttribute: (UInt16, String)? = nil) throws(NetlinkError) -> [GenericNetlinkMessage] {
        DumpReply.assemble(try exchange(command: command, flags: 0, ifindex: ifindex, limit: 64, stringAttribute: stringAttribute).messages).messages
    }

    /// A request answered by an acknowledgement only (TRIGGER_SCAN); extra u32 attributes appended.
    func command(_ command: UInt8, ifindex: UInt32, u32Attributes: [(UInt16, UInt32)]) throws(NetlinkError) {
        let msg = try build(command: command, flags: NLM_F_ACK, ifindex: ifindex)
        for (type, value) in u32Attributes where nla_put_u32(msg, Int32(type), value) < 0 {
            nlmsg_free(msg)
            throw NetlinkError(.libnl, "\(familyName) command \(command): attribute \(type) does not fit")
        }
        defer { nlmsg_free(msg) }
        try check(nl_send_auto(socket.handle, msg), "cannot send \(familyName) command \(command)")
        try check(nl_wait_for_ack(socket.handle), "\(familyName) command \(command) on ifindex \(ifindex)")
    }

    private func build(command: UInt8, flags: Int32, ifindex: UInt32?) throws(NetlinkError) -> OpaquePointer {
        guard let msg = nlmsg_alloc() else { throw NetlinkError(.libnl, "nlmsg_alloc failed") }
        guard cnl_genlmsg_put_request(msg, familyID, flags, command, 0) != nil else {
            nlmsg_free(msg)
            throw NetlinkError(.libnl, "cannot build \(familyName) command \(command)")
        }
        if let ifindex, nla_put_u32(msg, Int32(NL80211_ATTR_IFINDEX.rawValue), ifindex) < 0 {
            nlmsg_free(msg)
            throw NetlinkError(.libnl, "cannot add ifindex to \(familyName) command \(command)")
        }
        return msg
    }

    private func exchange(command: UInt8, flags: Int32, ifindex: UInt32?, limit: Int,
                          stringAttribute: (UInt16, String)? = nil) throws(NetlinkError) -> Collector {
        let msg = try build(command: command, flags: flags, ifindex: ifindex)
        defer { nlmsg_free(msg) }
        if let (type, value) = stringAttribute, nla_put_string(msg, Int32(type), value) < 0 {
            throw NetlinkError(.libnl, "\(familyName) command \(command): attribute \(type) does not fit")
        }
        let collector = Collector(limit: limit)
        let unmanaged = Unmanaged.passRetained(collector)
        defer { unmanaged.release() }
        let callback: nl_recvmsg_msg_cb_t = { message, argument in
            guard let message, let argument else { return Int32(NL_SKIP.rawValue) }
            let box = Unmanaged<Collector>.fromOpaque(argument).takeUnretainedValue()
            var length: UInt32 = 0
            let start = cnl_msg_bytes(message, &length)
            guard let start, length >= 16 else { return Int32(NL_SKIP.rawValue) }
            let bytes = Array(UnsafeBufferPointer(start: start, count: Int(length)))
            guard let parsed = try? NetlinkMessage.split(bytes).first else { return Int32(NL_SKIP.rawValue) }
            if parsed.isDumpInterrupted { box.interrupted = true }
            if box.messages.count < box.limit { box.messages.append(parsed) } else { box.overflow = true }
            return Int32(NL_OK.rawValue)
        }
        try check(nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_CUSTOM, callback, unmanaged.toOpaque()),
                  "cannot install netlink callback")
        // The collector dies with this call: never leave libnl holding a pointer to it.
        defer { nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_DEFAULT, nil, nil) }
        try check(nl_send_auto(socket.handle, msg), "cannot send \(familyName) command \(command)")
        let rc = nl_recvmsgs_default(socket.handle)
        // libnl reads a dump to its end before it reports -NLE_DUMP_INTR, so the socket is clean to reuse.
        if rc == -Int32(NLE_DUMP_INTR) {
            collector.interrupted = true
            return collector
        }
        try check(rc, "\(familyName) command \(command)\(ifindex.map { " on ifindex \($0)" } ?? "")")
        return collector
    }
}

/// The reply to one dump, from a live socket or from recorded messages (test fixtures).
public struct DumpReply: Sendable {
    public enum Failure: Sendable, Equatable {
        /// The interface went away between listing and dumping (ENODEV): not an error for a sampler.
        case noDevice
        /// The driver does not implement the command (EOPNOTSUPP, ENOENT): e.g. a radio without survey.
        case notSupported
    }

    public var messages: [GenericNetlinkMessage]
    /// `NLM_F_DUMP_INTR` was set on some part: the kernel's list changed while it was dumped.
    public var interrupted: Bool
    public var truncated: Bool
    public var failure: Failure?

    public init(messages: [GenericNetlinkMessage], interrupted: Bool, truncated: Bool, failure: Failure?) {
        self.messages = messages
        self.interrupted = interrupted
        self.truncated = truncated
        self.failure = failure
    }

    /// Assembles raw messages of one dump: data messages are kept, `NLMSG_DONE` and acknowledgements are
    /// dropped, an `NLMSG_ERROR` becomes a ``Failure`` (or an error for anything but ENODEV/EOPNOTSUPP/ENOENT).
    public static func assemble(_ raw: [NetlinkMessage]) -> DumpReply {
        var reply = DumpReply(messages: [], interrupted: false, truncated: false, failure: nil)
        for m in raw {
            if m.isDumpInterrupted { reply.interrupted = true }
            if let errno = m.errorNumber {
                switch errno {
                case 0: continue
                case 19: reply.failure = .noDevice  // ENODEV
                case 2, 95, 524: reply.failure = .notSupported  // ENOENT, EOPNOTSUPP, ENOTSUPP
                default: reply.failure = .notSupported
                }
                continue
            }
            if m.type == NetlinkMessage.typeDone { continue }
            if let g = GenericNetlinkMessage(m) { reply.messages.append(g) }
        }
        return reply
    }
}

/// Listens to one multicast group of a generic-netlink family without blocking: each ``drain`` reads
/// what has arrived since the last one.
final class GenericNetlinkListener {
    private let socket: NetlinkSocket

    /// Only messages whose generic-netlink command is in `commands` are kept and counted; the rest of the
    /// group's traffic (hostapd makes nl80211 multicast every beacon it hears) is read and ignored.
    private let commands: Set<UInt8>

    init?(family: String, group: String, commands: Set<UInt8>) throws(NetlinkError) {
        self.commands = commands
        let s = try NetlinkSocket(netlinkProtocol: NETLINK_GENERIC)
        let id = genl_ctrl_resolve_grp(s.handle, family, group)
        guard id >= 0 else { return nil }
        // Events are unsolicited: no sequence numbers to check.
        nl_socket_disable_seq_check(s.handle)
        try check(nl_socket_add_membership(s.handle, id), "cannot join \(family)/\(group)")
        try check(nl_socket_set_nonblocking(s.handle), "cannot make the \(family) event socket non-blocking")
        // 256 KiB of kernel buffer between two samples; an overrun is reported as lost events.
        _ = nl_socket_set_buffer_size(s.handle, 256 * 1024, 0)
        socket = s
    }

    private final class Box {
        var messages: [GenericNetlinkMessage] = []
        var dropped = 0
        let limit: Int
        let commands: Set<UInt8>
        init(limit: Int, commands: Set<UInt8>) {
            self.limit = limit
            self.commands = commands
        }
    }

    /// Messages received since the last drain, at most `limit` (the rest are read and counted as dropped).
    /// A receive-buffer overrun (the kernel dropped events) is reported as `lost`.
    func drain(limit: Int) -> (messages: [GenericNetlinkMessage], dropped: Int, lost: Bool) {
        let box = Box(limit: limit, commands: commands)
        let unmanaged = Unmanaged.passRetained(box)
        defer { unmanaged.release() }
        let callback: nl_recvmsg_msg_cb_t = { message, argument in
            guard let message, let argument else { return Int32(NL_SKIP.rawValue) }
            let box = Unmanaged<Box>.fromOpaque(argument).takeUnretainedValue()
            var length: UInt32 = 0
            guard let start = cnl_msg_bytes(message, &length), length >= 16 else { return Int32(NL_SKIP.rawValue) }
            let bytes = Array(UnsafeBufferPointer(start: start, count: Int(length)))
            guard let m = (try? NetlinkMessage.split(bytes).first).flatMap(GenericNetlinkMessage.init),
                  box.commands.contains(m.command) else { return Int32(NL_OK.rawValue) }
            if box.messages.count >= box.limit { box.dropped += 1 } else { box.messages.append(m) }
            return Int32(NL_OK.rawValue)
        }
        guard nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_CUSTOM, callback, unmanaged.toOpaque()) >= 0 else {
            return ([], 0, false)
        }
        defer { nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_DEFAULT, nil, nil) }
        var lost = false
        // Bounded: each call reads one socket buffer; stop when nothing is left or after 256 reads.
        for _ in 0..<256 {
            let rc = nl_recvmsgs_default(socket.handle)
            if rc == -Int32(NLE_AGAIN) { break }
            if rc == -Int32(NLE_NOMEM) { lost = true; continue }  // ENOBUFS: events were lost
            if rc < 0 { break }
        }
        return (box.messages, box.dropped, lost)
    }
}
