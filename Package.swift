// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Tangent",
    platforms: [.macOS(.v14)],
    products: [
        .library(
            name: "Tangent",
            targets: [
                "TangentTensor", "TangentIO", "TangentTokenizer", "TangentData", "TangentSafetensors",
                "TangentModel", "TangentTraining", "TangentFeatures", "TangentSurrogate", "TangentAttribution",
                "TangentEvaluation", "TangentReports",
                "Tangent",
            ]),
        .executable(name: "tangent", targets: ["tangent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        // `swift package generate-documentation --target Tangent` (scripts/docs.sh).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // OpenBLAS through its CBLAS header (Debian: libopenblas-dev).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        // Thin extern "C" shim over the SentencePiece C++ library (Debian: libsentencepiece-dev).
        .target(
            name: "CSentencePiece",
            path: "Sources/CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]
        ),
        // A matrix product with fixed per-element arithmetic (rows independent of their
        // neighbours on every CPU), for the products whose results must be reproducible.
        .target(name: "CFixedGemm", path: "Sources/CFixedGemm"),
        // Files: atomic writes, output locks, whole-file reads, sizes, progress on stderr.
        .target(name: "TangentIO"),
        // Numerics: BLAS products, Gram matrices, counter-based RNG, threads, fingerprints.
        .target(
            name: "TangentTensor",
            dependencies: [
                "CBLAS", "CFixedGemm", .product(name: "Numerics", package: "swift-numerics"),
            ]),
        .target(name: "TangentTokenizer", dependencies: ["CSentencePiece", "TangentIO"]),
        .target(name: "TangentData", dependencies: ["TangentIO"]),
        .target(name: "TangentSafetensors", dependencies: ["TangentIO"]),
        .target(
            name: "TangentModel",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentSafetensors", "TangentTokenizer", "TangentData",
            ]),
        .target(
            name: "TangentFeatures",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentModel", "TangentSafetensors", "TangentData",
            ]),
        // The kernel surrogate (kGLM): its fit, lambda selection, influence, scoring and cache,
        // tau, kernel spectra and the NFT-K layer weights.
        .target(
            name: "TangentSurrogate",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentModel", "TangentFeatures", "TangentData", "TangentSafetensors",
            ]),
        // Attribution of test texts to training texts: the kernels' training sides (features
        // or exact), the baselines' transforms (influence functions, TRAK, TracIn) and the engine.
        .target(
            name: "TangentAttribution",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentModel", "TangentFeatures", "TangentSurrogate", "TangentData",
                "TangentSafetensors",
            ]),
        // How far to trust an attribution: comparison of kernels (tau), LDS with its subset
        // retraining, the label audit and poisoning.
        .target(
            name: "TangentEvaluation",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentModel", "TangentFeatures", "TangentSurrogate",
                "TangentAttribution", "TangentData", "TangentTraining", "TangentSafetensors", "TangentTokenizer",
            ]),
        .target(
            name: "TangentTraining",
            dependencies: [
                "TangentTensor", "TangentModel", "TangentData", "TangentSafetensors",
            ]),
        // The library's entry point (`Attributor`), re-exporting the modules a caller needs.
        .target(
            name: "Tangent",
            dependencies: [
                "TangentTensor", "TangentData", "TangentModel", "TangentFeatures", "TangentSurrogate",
                "TangentAttribution", "TangentEvaluation",
            ]),
        // Rendering of the reports (Markdown, HTML with inline SVG) and their JSON files.
        .target(
            name: "TangentReports",
            dependencies: ["TangentIO", "TangentData", "TangentSurrogate", "TangentAttribution", "TangentEvaluation"]),
        .executableTarget(
            name: "tangent",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentTokenizer", "TangentData", "TangentSafetensors", "TangentModel",
                "TangentTraining",
                "TangentFeatures", "TangentSurrogate", "TangentAttribution", "TangentEvaluation", "TangentReports",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The README's library examples as a program (ReadmeExamplesTests keeps them in step).
        .executableTarget(
            name: "readme-examples",
            dependencies: [
                "Tangent", "TangentTensor", "TangentData", "TangentModel", "TangentFeatures", "TangentSurrogate",
                "TangentAttribution", "TangentEvaluation",
            ]),
        .testTarget(
            name: "TangentTests",
            dependencies: [
                "TangentTensor", "TangentIO", "TangentTokenizer", "TangentData", "TangentSafetensors",
                "TangentModel", "TangentTraining", "TangentFeatures", "TangentSurrogate", "TangentAttribution",
                "TangentEvaluation", "TangentReports", "Tangent",
            ],
            resources: [.copy("Fixtures")]
        ),
        // The CLI run as a subprocess on bad input, interrupted and concurrent runs.
        .testTarget(name: "CLITests", dependencies: ["tangent", "readme-examples"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
