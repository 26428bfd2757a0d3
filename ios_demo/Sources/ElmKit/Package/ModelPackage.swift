import Foundation

/// An exported model directory: `manifest.json`, the tokenizer, and the model file(s).
///
/// Why a type of its own: the app lists packages (bundled or downloaded) before loading any model, so finding
/// and describing them must be cheap and must work without Core ML.
public struct ModelPackage: Sendable, Identifiable, Equatable {
    public let directory: URL
    public let manifest: ModelManifest

    public var id: String { directory.standardizedFileURL.path }
    public var displayName: String { manifest.name ?? directory.lastPathComponent }

    public init(directory: URL) throws {
        self.init(directory: directory, manifest: try ModelManifest(contentsOf: directory.appendingPathComponent("manifest.json")))
    }

    public init(directory: URL, manifest: ModelManifest) {
        self.directory = directory
        self.manifest = manifest
    }

    public var tokenizerURL: URL { directory.appendingPathComponent(manifest.tokenizerFile) }

    public func loadTokenizer() throws -> Tokenizer { try Tokenizer(contentsOf: tokenizerURL) }

    public var chatTemplate: ChatTemplate { ChatTemplate(manifestValue: manifest.chatTemplate) }

    /// The Core ML model: `model_file` (what the exporter writes) or `files.model` if given, else the first
    /// `.mlmodelc` / `.mlpackage` listed or present.
    public var coreMLModelURL: URL? {
        if let named = manifest.modelFile ?? manifest.file(forRole: "model") ?? manifest.file(forRole: "coreml") {
            return directory.appendingPathComponent(named)
        }
        let isModel = { (name: String) in name.hasSuffix(".mlmodelc") || name.hasSuffix(".mlpackage") }
        if let listed = manifest.listedFiles.first(where: isModel) { return directory.appendingPathComponent(listed) }
        let present = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return present.sorted().first(where: isModel).map { directory.appendingPathComponent($0) }
    }

    /// Packages directly inside `root` (each a folder with a manifest.json), sorted by folder name.
    /// Folders whose manifest cannot be read, hidden folders (imports in progress) and speculative pair folders
    /// (their manifest.json lists checksums, not a model; see `SpeculativePair`) are skipped.
    public static func discover(in root: URL) -> [ModelPackage] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.compactMap { name in  // skips unfinished imports
            let dir = root.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("manifest.json").path),
                  !SpeculativePair.isPair(dir) else { return nil }
            return try? ModelPackage(directory: dir)
        }
    }
}
