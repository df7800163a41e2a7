import Foundation
import Hummingbird

/// An error answer: status plus a JSON body `{"error": {"code", "message", "path"}}` naming the problem.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public let path: String?

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, path: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.path = path
    }

    struct Body: Encodable {
        struct Inner: Encodable {
            let code: String
            let message: String
            let path: String?
        }
        let error: Inner
    }

    var response: Response {
        let data = (try? JSONEncoder().encode(Body(error: .init(code: code, message: message, path: path)))) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = try encoder.encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
