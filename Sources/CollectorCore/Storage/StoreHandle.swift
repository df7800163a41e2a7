import Logging
import TelemetryModel

/// The configured backend, opened: the one place that turns `storage:` in collector.yaml into a store.
/// PostgreSQL needs its connection pool running while the store is used; ``run(_:)`` does that around
/// the caller's work (structured: the pool ends when the work does), so `serve` and every one-shot
/// command use the store the same way.
public struct StoreHandle: Sendable {
    public let store: any TelemetryStore
    let postgres: PostgresStore?
    let postgresSettings: CollectorConfiguration.PostgresSettings?

    /// Opens the backend `configuration` names. SQLite is ready at once (its file made and migrated);
    /// PostgreSQL is connected and migrated in ``run(_:)``.
    public static func open(_ configuration: CollectorConfiguration, logger: Logger) throws(CollectorError) -> StoreHandle {
        if let settings = configuration.postgres {
            let store = try PostgresStore(settings: settings, logger: logger)
            return StoreHandle(store: store, postgres: store, postgresSettings: settings)
        }
        return StoreHandle(store: try SQLiteStore(path: configuration.sqlitePath), postgres: nil, postgresSettings: nil)
    }

    public init(sqlite store: SQLiteStore) {
        self.store = store
        postgres = nil
        postgresSettings = nil
    }

    private init(store: any TelemetryStore, postgres: PostgresStore?, postgresSettings: CollectorConfiguration.PostgresSettings?) {
        self.store = store
        self.postgres = postgres
        self.postgresSettings = postgresSettings
    }

    /// How long `run` waits for PostgreSQL to answer and the schema to be brought up to date.
    public static let connectTimeout: Duration = .seconds(30)

    /// Runs `body` with the store ready. A PostgreSQL server that does not answer within
    /// ``connectTimeout`` is an error naming it (not a hang).
    public func run<T>(_ body: (any TelemetryStore) async throws -> T) async throws -> T {
        guard let postgres, let settings = postgresSettings else { return try await body(store) }
        return try await withThrowingTaskGroup(of: Void.self) { pool in
            pool.addTask { await postgres.run() }
            defer { pool.cancelAll() }
            try await withThrowingTaskGroup(of: Void.self) { ready in
                ready.addTask {
                    try await postgres.probe()
                    try await postgres.migrate()
                }
                ready.addTask {
                    try await Task.sleep(for: Self.connectTimeout)
                    throw CollectorError(.storage, "PostgreSQL at \(settings) did not answer within \(Self.connectTimeout) (is it running, and are storage.postgres host, port, user and password_file right?)")
                }
                try await ready.next()
                ready.cancelAll()
            }
            return try await body(store)
        }
    }
}
