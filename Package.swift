// swift-tools-version:6.1
import PackageDescription

// The agent's closure (everything `meetpunt-agent` depends on) must stay free of
// Hummingbird, NIO, GRDB, postgres-nio, Yams, swift-crypto and full Foundation:
// docs/architecture.md gives the measured cost of each. `ArchitectureTests` (Tests/MeetpuntTests) checks it.

// The agent's modules (and TelemetryModel and GzipCodec, which the collector shares) reach generic type
// metadata (a `Dictionary<FlowKey, Int32>`'s storage class, say) through accessor functions instead of
// mangled names. A mangled name is resolved at run time, and the first use of each needs a conformance
// (`FlowKey: Hashable`), which the runtime finds by scanning every conformance record in the binary: 21
// scans of 20-120 µs in every `analyze` run, several of them before the first packet or after the last
// (docs/benchmarks.md, "Conformance scans, and a sixth pass on input B"). Stripped agent: +25 kB. It is a
// frontend option (`swiftc -frontend -help-hidden`): should a toolchain drop it, empty this list.
let directMetadata = ["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"]

let package = Package(
    name: "meetpunt",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "meetpunt-agent", targets: ["meetpunt-agent"]),
        .executable(name: "meetpunt-collector", targets: ["meetpunt-collector"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        // Only `meetpunt-collector loadtest` (the collector's own load generator) uses it; never the agent.
        // Same URL as Hummingbird's, so the pin in Package.resolved (1.37.0) serves both.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.25.0"),
        // The collector's OTLP export of fleet aggregates. OTLP/HTTP only: the gRPC trait would build
        // grpc-swift for a transport the exporter does not use.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        // The collector's PostgreSQL backend (storage.backend: postgres).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
    ],
    targets: [
        // MARK: C libraries (module.modulemap + shim.h; CCurl and CLibCrypto are C targets that dlopen theirs)
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-genl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        // libcurl is opened with dlopen when `run` builds its transport (Sources/CCurl/ccurl.c): the
        // headers come from Debian's libcurl4-openssl-dev, the library (libcurl4) is not linked.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // libcrypto is opened with dlopen at the first pseudonym, HMAC or random bytes (Sources/CLibCrypto/
        // ccrypto.c): the headers come from Debian's libssl-dev, the library (libssl3) is not linked.
        .target(name: "CLibCrypto", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // MARK: Shared by agent and collector (FoundationEssentials only)
        .target(name: "TelemetryModel", swiftSettings: [.unsafeFlags(directMetadata)]),
        .target(name: "GzipCodec", dependencies: ["CZlib"], swiftSettings: [.unsafeFlags(directMetadata)]),

        // MARK: Agent
        .target(name: "NetlinkKit", dependencies: ["CNetlink"], swiftSettings: [.unsafeFlags(directMetadata)]),
        // The per-packet path: its state lives in one class whose fields are touched a dozen times per
        // packet, and the runtime exclusivity check on each access cost a quarter of the analysis time
        // (perf, issue 13). Static exclusivity checking stays on; only the dynamic check goes.
        .target(name: "PacketCapture", dependencies: ["CPcap"], swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"] + directMetadata)]),
        .target(name: "TrafficAnalysis", dependencies: ["PacketCapture"], swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"] + directMetadata)]),
        .target(name: "Pseudonymisation", dependencies: ["CLibCrypto"], swiftSettings: [.unsafeFlags(directMetadata)]),
        .target(name: "Aggregation", dependencies: ["TelemetryModel"], swiftSettings: [.unsafeFlags(directMetadata)]),
        .target(name: "AgentConfig", dependencies: ["CYAML", "TelemetryModel"], swiftSettings: [.unsafeFlags(directMetadata)]),
        .target(name: "AgentCore", dependencies: [
            "NetlinkKit", "PacketCapture", "TrafficAnalysis", "Pseudonymisation", "Aggregation", "AgentConfig", "TelemetryModel", "GzipCodec", "CCurl",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.unsafeFlags(directMetadata)]),
        .executableTarget(name: "meetpunt-agent", dependencies: [
            "AgentCore", "AgentConfig", "Pseudonymisation", "NetlinkKit", "PacketCapture", "TrafficAnalysis",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.unsafeFlags(directMetadata)], linkerSettings: [
            // Release builds start faster (docs/benchmarks.md, "Start-up"): libstdc++ linked in rather than
            // loaded (Link/static-libstdc++ explains how), and none of the binary's 8,367 symbols exported to
            // the dynamic linker, which the toolchain's static-stdlib link asks for (-export-dynamic) and the
            // runtime's start-up paid for in a linear dladdr scan. Debug builds link as before. Release-mode
            // test bundles (`swift test -c release`) get these too and, without the static Swift stdlib,
            // would hold some of libstdc++ beside the shared one: the project's tests build in debug.
            // Linked by lld (the toolchain's own) with the relative relocations packed (DT_RELR): the
            // binary's 44,832 of them, 24 bytes each, were 1.1 MB of the stripped 18.6 MB, read by the
            // dynamic linker at every start; packed they are 8.6 kB, and start-up is about 0.1 ms shorter
            // (docs/benchmarks.md, "Packed relocations"). The loader must know DT_RELR: glibc 2.36 (Debian
            // 12) or musl 1.2.4 (OpenWrt 23.05) and later. An older glibc does not start the binary and
            // says why: version `GLIBC_ABI_DT_RELR' not found.
            .unsafeFlags(["-L\(Context.packageDirectory)/Link/static-libstdc++", "-Xlinker", "--no-export-dynamic",
                          "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                         .when(configuration: .release)),
        ]),

        // MARK: Collector
        .target(name: "CollectorCore", dependencies: [
            "TelemetryModel", "GzipCodec", "CZstd",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "OTel", package: "swift-otel"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "meetpunt-collector", dependencies: [
            "CollectorCore", "TelemetryModel", "GzipCodec",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // MARK: Tests
        .systemLibrary(name: "CTestSupport", path: "Tests/CTestSupport"),
        .testTarget(name: "MeetpuntTests", dependencies: [
            "TelemetryModel", "GzipCodec", "NetlinkKit", "Pseudonymisation", "Aggregation", "AgentConfig",
            "AgentCore", "CollectorCore", "CTestSupport", "PacketCapture", "TrafficAnalysis", "meetpunt-agent",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], resources: [.copy("Fixtures")]),
    ]
)
