#if canImport(SwiftUI)
import CoreML
import ElmKit
import Foundation
import Observation

/// Finds exported packages and loads one into the app's single `ModelHost`.
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

    /// What is loaded; the model itself lives only inside `host`.
    struct LoadedModel {
        let package: ModelPackage
        let tokenizer: Tokenizer
        let info: ModelHost.LoadedModelInfo
    }

    /// The one owner of the model and its state: chat and benchmark both go through it.
    let host = ModelHost()
    private(set) var entries: [Entry] = []
    private(set) var loaded: LoadedModel?
    private(set) var loadingName: String?
    private(set) var importingName: String?
    var computeUnits: MLComputeUnits = .all
    var errorMessage: String?

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

    /// Copies a package folder chosen in the Files picker into Documents/Models, off the main thread (a package
    /// can be over a gigabyte). Re-picking a package that is already there keeps it.
    func importPackage(from url: URL) {
        importingName = url.lastPathComponent
        errorMessage = nil
        Task {
            let root = Self.importedRoot
            let outcome: Result<ModelPackage, Error> = await Task.detached(priority: .userInitiated) {
                let scoped = url.startAccessingSecurityScopedResource()
                defer { if scoped { url.stopAccessingSecurityScopedResource() } }
                return Result(catching: { try PackageImporter.importPackage(from: url, into: root) })
            }.value
            importingName = nil
            if case let .failure(error) = outcome { errorMessage = "Import failed: \(error)" }
            refresh()
        }
    }

    func load(_ package: ModelPackage) async {
        loadingName = package.displayName
        errorMessage = nil
        loaded = nil  // the host drops the old model before creating the new one
        defer { loadingName = nil }
        let units = computeUnits
        let started = Date()
        do {
            let tokenizer = try await Task.detached { try package.loadTokenizer() }.value
            await host.unload()
            let compiled = try await CoreMLModelCompiler.compiledModel(for: package)
            let vocabularyHint = tokenizer.vocabularySize
            let info = try await host.load(name: package.displayName, computeUnits: units.reportName) {
                try CoreMLBackend.loadEngine(compiledModelURL: compiled, manifest: package.manifest, computeUnits: units,
                                             vocabularySizeHint: vocabularyHint)
            }
            // Load time as the user waits for it: compile-cache lookup (or compile) plus the Core ML load.
            let total = ModelHost.LoadedModelInfo(name: info.name, contextLength: info.contextLength,
                                                  prefillChunkLength: info.prefillChunkLength, computeUnits: info.computeUnits,
                                                  loadSeconds: Date().timeIntervalSince(started))
            loaded = LoadedModel(package: package, tokenizer: tokenizer, info: total)
        } catch {
            errorMessage = "Could not load \(package.displayName): \(error)"
        }
    }
}
#endif
