// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for the broker's parsers (Fuzz/README.md). A package of its own, depending
// on the broker by path, so that the fuzzing flags (`--sanitize=fuzzer --sanitize=address`,
// `-enable-testing` in release) never reach the broker's own build, products or tests:
// `scripts/fuzz` builds this package into `.build-fuzz`. These executables link only with
// `--sanitize=fuzzer` (libFuzzer provides `main`).

/// A library of the broker package.
func broker(_ name: String) -> Target.Dependency { .product(name: name, package: "swift-broker") }

let fuzzers: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzControl", [broker("BrokerProtocol")]),
    ("FuzzBinary", [broker("BrokerProtocol")]),
    ("FuzzFrames", [broker("BrokerProtocol"), broker("BrokerServer"), .product(name: "NIOWebSocket", package: "swift-nio")]),
    ("FuzzExtensions", [broker("BrokerProtocol"), broker("BrokerServer"), .product(name: "NIOHTTP1", package: "swift-nio")]),
    ("FuzzTopics", [broker("BrokerProtocol"), broker("BrokerServer")]),
    ("FuzzHTTP", [
        broker("BrokerProtocol"), broker("BrokerServer"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
    ]),
    ("FuzzSettings", [broker("BrokerSettings"), broker("BrokerServer")]),
]

let package = Package(
    name: "swift-broker-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "swift-broker", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
    ],
    targets: [
        // What every fuzzer shares: reading structure out of the input, and failing loudly.
        .target(
            name: "FuzzSupport",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
    ] + fuzzers.map { fuzzer in
        .executableTarget(
            name: fuzzer.name,
            dependencies: ["FuzzSupport", .product(name: "NIOCore", package: "swift-nio")]
                + fuzzer.dependencies
        )
    },
    swiftLanguageModes: [.v6]
)
