// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// The server's hot path: release builds skip the runtime exclusivity checks, which cost a few
/// percent of every publish (swift_beginAccess on each class property access); debug builds and
/// tests keep them. Only for the server side: SwiftPM refuses unsafe flags in a package used as
/// a versioned dependency, and BrokerProtocol and BrokerClient must stay usable as one.
let serverSide: [SwiftSetting] = strict + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let benchmark: Target.Dependency = .product(name: "Benchmark", package: "benchmark")
let benchmarkPlugin: Target.PluginUsage = .plugin(name: "BenchmarkPlugin", package: "benchmark")

let package = Package(
    name: "swift-broker",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "broker", targets: ["broker"]),
        .executable(name: "broker-cli", targets: ["broker-cli"]),
        .executable(name: "broker-bench", targets: ["broker-bench"]),
        .library(name: "BrokerClient", targets: ["BrokerClient"]),
        .library(name: "BrokerServer", targets: ["BrokerServer"]),
        .library(name: "BrokerProtocol", targets: ["BrokerProtocol"]),
        // The settings table and its loaders; Fuzz/ (a package of its own) fuzzes them through it.
        .library(name: "BrokerSettings", targets: ["BrokerSettings"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        // JWT verification on connect (Authenticator) and `broker token create/verify`; brings
        // swift-crypto. No hand-written crypto in this repository.
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        // Cluster mode (docs/cluster.md): the journal in PostgreSQL and LISTEN/NOTIFY between
        // brokers. Only BrokerJournalPostgres and the executable depend on it.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // Microbenchmarks (Benchmarks/). The MallocInterposer trait gives malloc counts without
        // jemalloc; it adds only malloc-interposer, TextTable, hdrhistogram-swift, swift-numerics
        // and swift-system to the tree.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Wire protocol: topics, JSON control messages, binary codec, WebSocket frame encoding.
        // No server or client code; depends on NIOCore only for ByteBuffer.
        .target(
            name: "BrokerProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The system zlib (raw deflate for permessage-deflate, RFC 7692).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Retained-message journal: the seam the server talks to, an in-memory journal and the
        // SQLite one (GRDB) with its single batching writer thread.
        .target(
            name: "BrokerJournal",
            dependencies: [
                "BrokerProtocol",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The writer binds and steps its insert through the C API (no per-row allocations).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: serverSide
        ),
        // Cluster mode: the journal in PostgreSQL (postgres-nio) behind the same `Journal` seam,
        // and the LISTEN/NOTIFY feed that tells a broker of the other brokers' publishes.
        .target(
            name: "BrokerJournalPostgres",
            dependencies: [
                "BrokerJournal",
                "BrokerProtocol",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: serverSide
        ),
        // The server engine: listener, WebSocket connection, subscription index, fan-out. What a
        // Swift service embeds: configured with a plain `BrokerConfiguration`, no files, flags or
        // process-wide state (logging, metrics backend, rlimits) of its own.
        .target(
            name: "BrokerServer",
            dependencies: [
                "BrokerProtocol",
                "BrokerJournal",
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            // The dashboard (`GET /dashboard`), compiled into the binary: no files at run time.
            resources: [
                .embedInCode("Dashboard/index.html"),
                .embedInCode("Dashboard/dashboard.js"),
                .embedInCode("Dashboard/dashboard.css"),
                .embedInCode("Dashboard/broker-client.js"),
            ],
            swiftSettings: serverSide
        ),
        // The broker's settings: the one table (`SettingKey.all`) from which the YAML/TOML files,
        // BROKER_* variables, flags, `--help`, `broker config check/show` and
        // docs/configuration.md are made, resolved into a `BrokerConfiguration` and a
        // `JournalConfiguration`.
        .target(
            name: "BrokerSettings",
            dependencies: [
                "BrokerServer",
                "BrokerJournal",
                "BrokerProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                // Configuration files: YAML with line marks for `broker config check`, and TOML.
                .product(name: "Yams", package: "Yams"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: strict
        ),
        // What running the broker as a process takes besides the engine: JSON log lines, the
        // `# HELP` texts of the Prometheus exposition, the open-file limit. Used by the `broker`
        // executable and the in-process test broker.
        .target(
            name: "BrokerRuntime",
            dependencies: [
                "BrokerServer",
                "BrokerProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The async/await client library Swift services embed.
        .target(
            name: "BrokerClient",
            dependencies: [
                "BrokerProtocol",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "WSCompression", package: "swift-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // One HTTP/1.1 request to the broker's API on NIO (no Foundation networking, so no
        // libcurl): broker-cli's `retained ls` and `stats`, broker's `retained clear` and
        // `healthcheck` (the Docker image's health check).
        .target(
            name: "BrokerHTTPClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "broker",
            dependencies: [
                "BrokerServer",
                "BrokerHTTPClient",
                "BrokerProtocol",
                "BrokerSettings",
                "BrokerRuntime",
                "BrokerJournal",
                "BrokerJournalPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // SIGHUP reloads the settings (Reload.swift).
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: serverSide
        ),
        .executableTarget(
            name: "broker-cli",
            dependencies: [
                "BrokerClient",
                "BrokerProtocol",
                // `retained ls` and `stats`: one GET each on the HTTP API.
                "BrokerHTTPClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // Load generator: retained publish/ack/replay and fan-out (NIO handlers, one event loop).
        .executableTarget(
            name: "broker-bench",
            dependencies: [
                "BrokerProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: serverSide
        ),
        // What the integration tests share: the in-process broker, the built executables run as
        // subprocesses, polling. A plain target that no product exposes (the test targets use its
        // `package` declarations).
        .target(
            name: "BrokerTestSupport",
            dependencies: [
                "BrokerServer",
                "BrokerRuntime",
                "BrokerJournal",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Tests/BrokerTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerProtocolTests",
            dependencies: ["BrokerProtocol"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerJournalTests",
            // BrokerJournalPostgres and BrokerTestSupport (its PostgreSQL server): the same
            // journal behaviour checked against the cluster journal.
            dependencies: ["BrokerJournal", "BrokerJournalPostgres", "BrokerTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerServerTests",
            dependencies: [
                "BrokerServer",
                "BrokerRuntime",
                "BrokerJournal",
                "BrokerProtocol",
                "BrokerTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerSettingsTests",
            dependencies: [
                "BrokerSettings",
                "BrokerServer",
                "BrokerJournal",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerRuntimeTests",
            dependencies: [
                "BrokerRuntime",
                "BrokerServer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            // broker-bench's parsers and plans (the NATS stream, `routing`'s placement), tested as units.
            name: "BrokerBenchTests",
            dependencies: ["broker-bench", "BrokerProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerClientTests",
            dependencies: [
                "BrokerClient", "BrokerServer", "BrokerJournal", "BrokerTestSupport",
                // The format template and context resolution, tested as units.
                "broker-cli", "BrokerHTTPClient",
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict
        ),

        // Microbenchmarks (ordo-one/benchmark), one executable per area; `swift package benchmark`
        // runs them in release (Benchmarks/README.md). `swift build` builds them too, so they keep
        // compiling against the code they measure.
        .executableTarget(
            name: "TopicMatching",
            dependencies: ["BrokerServer", "BrokerProtocol", .product(name: "NIOCore", package: "swift-nio"), benchmark],
            path: "Benchmarks/TopicMatching",
            swiftSettings: strict,
            plugins: [benchmarkPlugin]
        ),
        .executableTarget(
            name: "FrameEncoding",
            dependencies: ["BrokerProtocol", .product(name: "NIOCore", package: "swift-nio"), benchmark],
            path: "Benchmarks/FrameEncoding",
            swiftSettings: strict,
            plugins: [benchmarkPlugin]
        ),
        .executableTarget(
            name: "ControlParsing",
            dependencies: ["BrokerProtocol", .product(name: "NIOCore", package: "swift-nio"), benchmark],
            path: "Benchmarks/ControlParsing",
            swiftSettings: strict,
            plugins: [benchmarkPlugin]
        ),
        .executableTarget(
            name: "FlushDecision",
            dependencies: ["BrokerServer", .product(name: "NIOCore", package: "swift-nio"), benchmark],
            path: "Benchmarks/FlushDecision",
            swiftSettings: strict,
            plugins: [benchmarkPlugin]
        ),
        .executableTarget(
            name: "JournalAppend",
            dependencies: [
                "BrokerJournal",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                benchmark,
            ],
            path: "Benchmarks/JournalAppend",
            swiftSettings: strict,
            plugins: [benchmarkPlugin]
        ),
    ],
    swiftLanguageModes: [.v6]
)
