import CNetlink

/// Errors from libnl and the kernel behind it.
public struct NetlinkError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private enum Value { case libnl, notSupported, noSuchDevice, permission, malformed, interrupted }
        private let value: Value
        private init(_ v: Value) { value = v }
        public static let libnl = Code(.libnl)
        public static let notSupported = Code(.notSupported)
        public static let noSuchDevice = Code(.noSuchDevice)
        public static let permission = Code(.permission)
        /// A message or attribute that does not parse (a truncated or corrupt reply, a bad fixture).
        public static let malformed = Code(.malformed)
        /// A dump the kernel marked inconsistent (`NLM_F_DUMP_INTR`) on every retry.
        public static let interrupted = Code(.interrupted)
    }

    public let code: Code
    public let message: String
    /// The negative `NLE_*` value libnl returned, when there was one.
    public let libnlError: Int32?

    init(_ code: Code, _ message: String, libnlError: Int32? = nil) {
        self.code = code
        self.message = message
        self.libnlError = libnlError
    }

    public var description: String { message }
}

/// libnl's convention: `>= 0` is success (sometimes a value such as a family id), `-NLE_*` is failure.
/// Every libnl call goes through here so each failure says what was being done.
@discardableResult
func check(_ rc: Int32, _ what: @autoclosure () -> String) throws(NetlinkError) -> Int32 {
    guard rc < 0 else { return rc }
    let errorNumber = -rc
    let text = String(cString: nl_geterror(rc))
    let code: NetlinkError.Code
    switch errorNumber {
    case Int32(NLE_OPNOTSUPP), Int32(NLE_OBJ_NOTFOUND), Int32(NLE_PROTO_MISMATCH): code = .notSupported
    case Int32(NLE_NODEV): code = .noSuchDevice
    case Int32(NLE_DUMP_INTR): code = .interrupted
    case Int32(NLE_PERM): code = .permission
    default: code = .libnl
    }
    throw NetlinkError(code, "\(what()): \(text)", libnlError: rc)
}
