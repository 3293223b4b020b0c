// swift-tools-version: 6.0
// libFuzzer harnesses for tangent's file readers; built and run by scripts/fuzz.sh with
// `-sanitize=fuzzer,address`. A separate package so that the main build and tests never
// need the fuzzer runtime.
import PackageDescription

let package = Package(
    name: "TangentFuzz",
    dependencies: [.package(name: "Tangent", path: "..")],
    targets: [
        .executableTarget(name: "TangentFuzz", dependencies: [.product(name: "Tangent", package: "Tangent")])
    ],
    swiftLanguageModes: [.v6]
)
