import CNetlink

/// Negotiated speed and duplex of an interface.
public struct LinkModes: Sendable, Equatable {
    /// Mb/s; nil when the driver does not know (no link, virtual device without a speed).
    public var speedMbps: UInt32?
    /// nil when unknown.
    public var fullDuplex: Bool?
    /// Which path answered: ethtool generic netlink or the legacy ioctl.
    public var source: Source

    public enum Source: String, Sendable { case netlink, ioctl, none }

    public static let unknown = LinkModes(speedMbps: nil, fullDuplex: nil, source: .none)
}

/// Reads speed and duplex through the ethtool generic-netlink family (ETHTOOL_MSG_LINKMODES_GET), falling
/// back to the SIOCETHTOOL ioctl on kernels without it (before 5.6). Never reads sysfs, whose `speed` file
/// fails with EINVAL for many virtual and down interfaces.
public final class EthtoolLinkModes {
    private let socket: NetlinkSocket?
    private let familyID: Int32?

    /// Opens a generic-netlink socket in the calling thread's namespace and resolves the "ethtool" family;
    /// when either is missing, every query uses the ioctl.
    public init() {
        if let s = try? NetlinkSocket(netlinkProtocol: NETLINK_GENERIC) {
            let id = genl_ctrl_resolve(s.handle, ETHTOOL_GENL_NAME)
            socket = id >= 0 ? s : nil
            familyID = id >= 0 ? id : nil
        } else {
            socket = nil
            familyID = nil
        }
    }

    public var usesNetlink: Bool { familyID != nil }

    public func linkModes(of interface: String) -> LinkModes {
        if let socket, let familyID, let modes = try? Self.queryNetlink(socket: socket, family: familyID, interface: interface) {
            return modes
        }
        return Self.queryIoctl(interface: interface)
    }

    // Receives the LINKMODES_GET reply through libnl's VALID callback.
    private final class ReplyBox {
        var speed: UInt32?
        var duplex: UInt8?
        var sawReply = false
    }

    static func queryNetlink(socket: NetlinkSocket, family: Int32, interface: String) throws(NetlinkError) -> LinkModes {
        guard let msg = nlmsg_alloc() else { throw NetlinkError(.libnl, "nlmsg_alloc failed") }
        // nl_send_sync frees the message on every path.
        guard cnl_genlmsg_put_request(msg, family, 0, UInt8(ETHTOOL_MSG_LINKMODES_GET), UInt8(ETHTOOL_GENL_VERSION)) != nil,
              let header = nla_nest_start(msg, Int32(ETHTOOL_A_LINKMODES_HEADER)) else {
            nlmsg_free(msg)
            throw NetlinkError(.libnl, "cannot build ETHTOOL_MSG_LINKMODES_GET for \(interface)")
        }
        guard nla_put_string(msg, Int32(ETHTOOL_A_HEADER_DEV_NAME), interface) == 0,
              nla_put_u32(msg, Int32(ETHTOOL_A_HEADER_FLAGS), UInt32(ETHTOOL_FLAG_COMPACT_BITSETS)) == 0 else {
            nlmsg_free(msg)
            throw NetlinkError(.libnl, "interface name \(interface) does not fit the request")
        }
        nla_nest_end(msg, header)

        let box = ReplyBox()
        let unmanaged = Unmanaged.passRetained(box)
        defer { unmanaged.release() }
        let callback: nl_recvmsg_msg_cb_t = { message, argument in
            guard let message, let argument else { return Int32(NL_SKIP.rawValue) }
            let box = Unmanaged<ReplyBox>.fromOpaque(argument).takeUnretainedValue()
            let maxAttr = Int(ETHTOOL_A_LINKMODES_MAX)
            var attrs = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: maxAttr + 1)
            guard genlmsg_parse(nlmsg_hdr(message), 0, &attrs, Int32(maxAttr), nil) == 0 else { return Int32(NL_SKIP.rawValue) }
            box.sawReply = true
            if let a = attrs[Int(ETHTOOL_A_LINKMODES_SPEED)] { box.speed = nla_get_u32(a) }
            if let a = attrs[Int(ETHTOOL_A_LINKMODES_DUPLEX)] { box.duplex = nla_get_u8(a) }
            return Int32(NL_OK.rawValue)
        }
        try check(nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_CUSTOM, callback, unmanaged.toOpaque()),
                  "cannot install netlink callback")
        // The box dies with this call: never leave libnl holding a pointer to it.
        defer { nl_socket_modify_cb(socket.handle, NL_CB_VALID, NL_CB_DEFAULT, nil, nil) }
        try check(nl_send_sync(socket.handle, msg), "ETHTOOL_MSG_LINKMODES_GET for \(interface) failed")
        guard box.sawReply else { throw NetlinkError(.notSupported, "no LINKMODES reply for \(interface)") }
        return LinkModes(speedMbps: Self.knownSpeed(box.speed), fullDuplex: Self.knownDuplex(box.duplex), source: .netlink)
    }

    static func queryIoctl(interface: String) -> LinkModes {
        var speed: UInt32 = 0
        var duplex: UInt8 = 0
        guard cnl_ethtool_ioctl_gset(interface, &speed, &duplex) == 0 else { return .unknown }
        return LinkModes(speedMbps: knownSpeed(speed), fullDuplex: knownDuplex(duplex), source: .ioctl)
    }

    /// SPEED_UNKNOWN is (u32)-1; 0 is never a real negotiated speed either.
    static func knownSpeed(_ raw: UInt32?) -> UInt32? {
        guard let raw, raw != UInt32.max, raw != 0 else { return nil }
        return raw
    }

    static func knownDuplex(_ raw: UInt8?) -> Bool? {
        switch raw {
        case UInt8(DUPLEX_FULL): return true
        case UInt8(DUPLEX_HALF): return false
        default: return nil
        }
    }
}
