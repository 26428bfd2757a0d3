#if canImport(SwiftUI)
import CoreML
import ElmKit
import Foundation
import Observation

/// Finds exported packages and holds the one that is loaded.
///
/// Packages live in two places: `Models/` inside the app bundle (copied there at build time, see README) and
/// `Documents/Models/` (imported with the Files picker or copied through Finder file sharing).
@MainActor @Observable
final class ModelStore {
    enum Source: String { case bundled = "Bundled", downloaded = "Imported" }

    struct Entry: Identifiable {
        let package: ModelPackage
        let source: Source
        var id: String { package.id }
    }

    private(set) var entries: [Entry] = []
    private(set) var loaded: LoadedModel?
    private(set) var loadingName: String?
    var computeUnits: MLComputeUnits = .all
    var errorMessage: String?

    struct LoadedModel {
        let package: ModelPackage
        let tokenizer: Tokenizer
        let model: KVCacheEngine
        let loadSeconds: Double
    }

    static var importedRoot: URL {
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        return documents.appendingPathComponent("Models", isDirectory: true)
    }

    static var bundledRoot: URL? { Bundle.main.resourceURL?.appendingPathComponent("Models", isDirectory: true) }

    func refresh() {
        try? FileManager.default.createDirectory(at: Self.importedRoot, withIntermediateDirectories: true)
        let bundled = Self.bundledRoot.map { ModelPackage.discover(in: $0).map { Entry(package: $0, source: .bundled) } } ?? []
        let imported = ModelPackage.discover(in: Self.importedRoot).map { Entry(package: $0, source: .downloaded) }
        entries = bundled + imported
    }

    /// Copies a package folder chosen in the Files picker into Documents/Models.
    func importPackage(from url: URL) {
        let scoped = url.startAccessingSecurityScopedResource()
        defer { if scoped { url.stopAccessingSecurityScopedResource() } }
        do {
            let target = Self.importedRoot.appendingPathComponent(url.lastPathComponent, isDirectory: true)
            if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
            try FileManager.default.copyItem(at: url, to: target)
            _ = try ModelPackage(directory: target)  // fails early if there is no readable manifest.json
            refresh()
        } catch {
            errorMessage = "Import failed: \(error)"
        }
    }

    func load(_ package: ModelPackage) async {
        loadingName = package.displayName
        errorMessage = nil
        defer { loadingName = nil }
        let units = computeUnits
        let started = Date()
        do {
            let tokenizer = try await Task.detached { try package.loadTokenizer() }.value
            let compiled = try await CoreMLModelCompiler.compiledModel(for: package)
            let model = try await Task.detached {
                try CoreMLBackend.loadEngine(compiledModelURL: compiled, manifest: package.manifest, computeUnits: units,
                                        vocabularySizeHint: tokenizer.vocabularySize)
            }.value
            loaded = LoadedModel(package: package, tokenizer: tokenizer, model: model, loadSeconds: Date().timeIntervalSince(started))
        } catch {
            errorMessage = "Could not load \(package.displayName): \(error)"
        }
    }
}
#endif
