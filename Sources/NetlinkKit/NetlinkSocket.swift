import CNetlink

/// Owns one libnl socket. The socket lives in the network namespace of the thread that created it.
///
/// A `final class` rather than a `~Copyable` struct because samplers keep it across samples; it is not
/// `Sendable`: each sampler uses its sockets from one thread at a time.
final class NetlinkSocket {
    let handle: OpaquePointer

    /// `netlinkProtocol` is `NETLINK_ROUTE` or `NETLINK_GENERIC`.
    init(netlinkProtocol: Int32) throws(NetlinkError) {
        guard let sock = nl_socket_alloc() else {
            throw NetlinkError(.libnl, "nl_socket_alloc failed: out of memory")
        }
        let rc = nl_connect(sock, netlinkProtocol)
        guard rc >= 0 else {
            nl_socket_free(sock)
            try check(rc, "cannot open netlink socket (protocol \(netlinkProtocol))")
            fatalError("unreachable")
        }
        handle = sock
        // Large dumps (many interfaces or neighbours) arrive in one buffer; 64 KiB bounds each read.
        nl_socket_set_msg_buf_size(sock, 64 * 1024)
    }

    /// The socket's file descriptor, for tests that prove it is closed after `deinit`.
    var fileDescriptor: Int32 { nl_socket_get_fd(handle) }

    deinit {
        nl_close(handle)
        nl_socket_free(handle)
    }
}
