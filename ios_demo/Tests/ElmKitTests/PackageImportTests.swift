import Foundation
import Testing
@testable import ElmKit

/// Import into the app's models folder, and the content key of the compiled-model cache.
@Suite struct PackageImportTests {
    let scratch: URL

    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("elmkit-import-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    func makePackage(_ path: String, weights: String) throws -> URL {
        let dir = scratch.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("model.mlpackage/Data"), withIntermediateDirectories: true)
        try Data(#"{"name": "p", "target": "coreml", "model_file": "model.mlpackage"}"#.utf8).write(to: dir.appendingPathComponent("manifest.json"))
        try Data(weights.utf8).write(to: dir.appendingPathComponent("model.mlpackage/Data/weight.bin"))
        return dir
    }

    @Test func rePickingAPackageAlreadyInPlaceKeepsIt() throws {
        let root = scratch.appendingPathComponent("Models")
        let original = try makePackage("picked/smol", weights: "abc")
        let imported = try PackageImporter.importPackage(from: original, into: root)
        let again = try PackageImporter.importPackage(from: imported.directory, into: root)
        #expect(again.directory.lastPathComponent == "smol")
        #expect(FileManager.default.fileExists(atPath: again.directory.appendingPathComponent("model.mlpackage/Data/weight.bin").path))
        #expect(ModelPackage.discover(in: root).count == 1)
    }

    @Test func aNewerCopyReplacesTheOldOneAndLeavesNoStaging() throws {
        let root = scratch.appendingPathComponent("Models")
        _ = try PackageImporter.importPackage(from: try makePackage("v1/smol", weights: "old"), into: root)
        let updated = try PackageImporter.importPackage(from: try makePackage("v2/smol", weights: "new"), into: root)
        let weights = try String(contentsOf: updated.directory.appendingPathComponent("model.mlpackage/Data/weight.bin"), encoding: .utf8)
        #expect(weights == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["smol"])
    }

    @Test func aFolderWithoutManifestIsRefusedAndLeavesNothing() throws {
        let root = scratch.appendingPathComponent("Models")
        let bare = scratch.appendingPathComponent("bare")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        #expect(throws: PackageImporter.ImportError.notAPackage("bare")) { try PackageImporter.importPackage(from: bare, into: root) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
    }

    @Test func aSpeculativePairIsRefusedWithWhatToPick() throws {
        // A pair folder has a manifest.json of its own (checksums), so it would otherwise pass as a package.
        let root = scratch.appendingPathComponent("Models")
        let pair = try makePackage("picked/smol-pair", weights: "abc")
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("coreml_pair/pair.json"),
                                         to: pair.appendingPathComponent("pair.json"))
        #expect(throws: PackageImporter.ImportError.speculativePair("smol-pair")) { try PackageImporter.importPackage(from: pair, into: root) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
    }

    @Test func fingerprintFollowsContentNotFolderNames() throws {
        let a = try makePackage("x/smol", weights: "same weights")
        let b = try makePackage("y/other-name", weights: "same weights")
        let c = try makePackage("z/smol", weights: "same weightz")
        let key = { (dir: URL) in try PackageFingerprint.of(dir.appendingPathComponent("model.mlpackage")) }
        #expect(try key(a) == key(b))
        #expect(try key(a) != key(c))
        #expect(try key(a).count == 16)
        // A renamed file inside the model changes the key even with the same bytes.
        let d = try makePackage("w/smol", weights: "same weights")
        try FileManager.default.moveItem(at: d.appendingPathComponent("model.mlpackage/Data/weight.bin"),
                                        to: d.appendingPathComponent("model.mlpackage/Data/weights.bin"))
        #expect(try key(a) != key(d))
    }
}
