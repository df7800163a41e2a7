import CollectorCore
import Foundation
import GzipCodec
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TelemetryModel

/// `POST /v1/report-batches`: each report is acknowledged on its own, by seq, and stored once however often
/// the batch is sent.
@Suite struct BatchIngestTests {
    static func batch(_ reports: [Report]) throws -> ByteBuffer {
        let parts = try reports.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        return ByteBuffer(bytes: try Gzip.compress(Array("{\"reports\":[\(parts.joined(separator: ","))]}".utf8)))
    }

    static func ack(_ r: TestResponse) throws -> BatchAcknowledgement {
        try JSONDecoder().decode(BatchAcknowledgement.self, from: Data(buffer: r.body))
    }

    @Test func eachReportIsAcknowledgedAndABatchSentTwiceIsStoredOnce() async throws {
        let f = try await CollectorFixture()
        let reports = (1...5).map { f.report(seq: UInt64($0), endMs: f.now - Int64(6 - $0) * 60_000) }
        try await f.app().test(.live) { client in
            for attempt in 0..<2 {
                let r = try await client.execute(uri: "/v1/report-batches", method: .post,
                                                 headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), body: try Self.batch(reports))
                #expect(r.status == .ok)
                let ack = try Self.ack(r)
                #expect(ack.device == "dev-a")
                #expect(ack.results.map(\.seq) == [1, 2, 3, 4, 5])
                #expect(ack.results.allSatisfy { $0.status == (attempt == 0 ? .stored : .duplicate) }, "\(ack.results)")
            }
        }
        #expect(try f.rows("reports") == 5)
        #expect(try f.seriesStored() == 10)
    }

    @Test func aBadReportIsRejectedAloneWithItsPathAndTheOthersAreStored() async throws {
        let f = try await CollectorFixture()
        var bad = f.report(seq: 2)
        bad.series[0].labels["client"] = "00:1b:21:3a:4f:5e"  // a raw MAC: the identifier guard refuses it
        let expired = f.report(seq: 3, endMs: f.now - 800 * 86_400_000)
        let reports = [f.report(seq: 1), bad, expired, f.report(seq: 4)]
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/report-batches", method: .post,
                                             headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true),
                                             body: try Self.batch(reports))
            #expect(r.status == .ok)
            let ack = try Self.ack(r)
            #expect(ack.results.map(\.status) == [.stored, .rejected, .rejected, .stored])
            #expect(ack.results[1].error?.path?.hasPrefix("reports[1]") == true, "\(ack.results[1])")
            #expect(ack.results[2].error?.code == "expired" || ack.results[2].error?.code == "invalid_report", "\(ack.results[2])")
            #expect(!String(buffer: r.body).contains("00:1b:21"), "the answer never echoes the identifier")
        }
        #expect(try f.rows("reports") == 2)
    }

    static let badBatches: [(String, String, HTTPResponse.Status, String)] = [
        ("not JSON", "{reports", .badRequest, "malformed_batch"),
        ("no reports key", #"{"items":[]}"#, .badRequest, "malformed_batch"),
        ("empty", #"{"reports":[]}"#, .badRequest, "empty_batch"),
        ("a report without seq", #"{"reports":[{"device":"dev-a"}]}"#, .badRequest, "malformed_batch"),
    ]

    /// Each bad batch fails whole, names what was wrong, stores nothing, and the server stays healthy.
    @Test(arguments: badBatches)
    func badBatchesFailWholeAndStoreNothing(name: String, body: String, status: HTTPResponse.Status, code: String) async throws {
        let f = try await CollectorFixture()
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/report-batches", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"]),
                                             body: ByteBuffer(string: body))
            #expect(r.status == status, "\(name)")
            #expect(try decodeError(r).code == code, "\(name)")
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
        }
        #expect(try f.rows("reports") == 0)
    }

    @Test func aBatchOverTheLimitIs413AndAnotherDevicesReportIs403() async throws {
        let f = try await CollectorFixture()
        let many = (1...101).map { f.report(seq: UInt64($0)) }
        try await f.app().test(.live) { client in
            let r = try await client.execute(uri: "/v1/report-batches", method: .post,
                                             headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true), body: try Self.batch(many))
            #expect(r.status == .contentTooLarge)
            #expect(try decodeError(r).code == "batch_too_large")
            let other = try await client.execute(uri: "/v1/report-batches", method: .post,
                                                 headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true),
                                                 body: try Self.batch([f.report(device: "dev-b", seq: 1)]))
            #expect(other.status == .forbidden)
            let noToken = try await client.execute(uri: "/v1/report-batches", method: .post, headers: CollectorFixture.headers(nil),
                                                   body: try Self.batch([f.report(seq: 1)]))
            #expect(noToken.status == .unauthorized)
        }
        #expect(try f.rows("reports") == 0)
    }
}
