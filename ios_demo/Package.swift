// swift-tools-version: 6.0
// ElmKit: the portable part of the elmexport iOS demo (tokenizers, chat templates, sampling, generation,
// package manifest, device report). It builds and tests on Linux; the Core ML engine inside it compiles
// only where CoreML exists, and the SwiftUI app in App/ is built by Xcode from project.yml, not by SwiftPM.
import PackageDescription

let package = Package(
    name: "ElmKit",
    platforms: [.iOS(.v18), .macOS(.v15)],
    products: [
        .library(name: "ElmKit", targets: ["ElmKit"]),
    ],
    targets: [
        .target(name: "ElmKit", path: "Sources/ElmKit"),
        .testTarget(name: "ElmKitTests", dependencies: ["ElmKit"], path: "Tests/ElmKitTests"),
    ],
    swiftLanguageModes: [.v6]
)
