import Foundation
import Testing
@testable import ElmKit

/// Reading `manifest.json` and finding packages on disk.
@Suite struct ManifestTests {
    static let full = #"""
    {
      "format_version": 1,
      "name": "smollm2-135m-instruct",
      "target": "coreml",
      "model": {"family": "llama", "config": {"hidden_size": 576, "num_hidden_layers": 30}},
      "tokenizer": "tokenizer.json",
      "bos_token_id": 1,
      "eos_token_ids": [2, 0],
      "chat_template": "chatml",
      "context_length": 2048,
      "prefill_chunk": 64,
      "quantization": "int4",
      "random_weights": false,
      "files": {"model": "model.mlpackage", "tokenizer": "tokenizer.json"},
      "exporter": {"version": "0.1.0"}
    }
    """#

    @Test func readsAManifestTheExporterWrote() throws {
        // Fixtures/coreml_engine/manifest.json is copied unchanged from `elmexport coreml --quant int4` output.
        let dir = Fixtures.root.appendingPathComponent("coreml_engine")
        let m = try ModelManifest(contentsOf: dir.appendingPathComponent("manifest.json"))
        #expect(m.name == "smollm2-135m-instruct-coreml-int4")
        #expect(m.target == "coreml")
        #expect(m.quantization == "int4")  // an object {"name": "int4", ...} in real manifests
        #expect(m.systemPrompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        #expect(m.chatTemplate == "chatml")
        #expect(m.contextLength == 512 && m.prefillChunk == 64)
        #expect(m.eosTokenIds == [2] && m.bosTokenId == 1)
        #expect(m.randomWeights == false)
        #expect(m.modelFile == "smollm2-135m-instruct.mlpackage")
        let package = ModelPackage(directory: dir, manifest: m)
        #expect(package.coreMLModelURL?.lastPathComponent == "smollm2-135m-instruct.mlpackage")
        let report = DeviceReport.PackageInfo(manifest: m, fallbackName: "dir")
        #expect(report.quantization == "int4" && report.name == "smollm2-135m-instruct-coreml-int4")
    }

    @Test func readsEveryDocumentedKey() throws {
        let m = ModelManifest(json: try JSONValue.parse(Self.full))
        #expect(m.formatVersion == 1)
        #expect(m.name == "smollm2-135m-instruct")
        #expect(m.target == "coreml")
        #expect(m.modelFamily == "llama")
        #expect(m.modelConfig?["num_hidden_layers"]?.intValue == 30)
        #expect(m.tokenizerFile == "tokenizer.json")
        #expect(m.bosTokenId == 1)
        #expect(m.eosTokenIds == [2, 0])
        #expect(m.chatTemplate == "chatml")
        #expect(m.contextLength == 2048)
        #expect(m.prefillChunk == 64)
        #expect(m.quantization == "int4")
        #expect(m.randomWeights == false)
        #expect(m.file(forRole: "model") == "model.mlpackage")
        #expect(m.coreML == CoreMLContract())
    }

    @Test func toleratesMissingAndMistypedKeys() throws {
        let m = ModelManifest(json: try JSONValue.parse(#"{"name": 7, "eos_token_ids": 2, "chat_template": null, "context_length": "big"}"#))
        #expect(m.name == nil)
        #expect(m.eosTokenIds == [2])
        #expect(m.chatTemplate == nil)
        #expect(m.contextLength == nil)
        #expect(m.tokenizerFile == "tokenizer.json")
        #expect(ModelManifest(json: .object([])).eosTokenIds == [])
    }

    @Test func coreMLNamesCanBeOverridden() throws {
        let m = ModelManifest(json: try JSONValue.parse(#"{"coreml": {"prefill_function": "pf", "logits": "out"}}"#))
        #expect(m.coreML.prefillFunction == "pf")
        #expect(m.coreML.logits == "out")
        #expect(m.coreML.decodeFunction == "decode")
        #expect(m.coreML.inputIds == "input_ids")
        #expect(m.coreML.inputPositions == "input_pos")
    }

    @Test func discoversPackagesAndTheirFiles() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("elmkit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        // b: manifest names the model file; a: no files key, a model directory is found on disk;
        // c: not a package; d: unreadable manifest; e: a speculative pair (its manifest.json as the exporter writes it).
        for name in ["a", "b", "c", "d", "e"] { try fm.createDirectory(at: root.appendingPathComponent(name), withIntermediateDirectories: true) }
        try Data(#"{"generator": "elmexport", "format_version": 1, "kind": "speculative-pair", "pair": "pair.json", "checksums": {}}"#.utf8)
            .write(to: root.appendingPathComponent("e/manifest.json"))
        try fm.copyItem(at: Fixtures.root.appendingPathComponent("coreml_pair/pair.json"), to: root.appendingPathComponent("e/pair.json"))
        try Data(#"{"name": "Alpha", "chat_template": "openelm"}"#.utf8).write(to: root.appendingPathComponent("a/manifest.json"))
        try fm.createDirectory(at: root.appendingPathComponent("a/z.mlmodelc"), withIntermediateDirectories: true)
        try Data(Self.full.utf8).write(to: root.appendingPathComponent("b/manifest.json"))
        try Data("{broken".utf8).write(to: root.appendingPathComponent("d/manifest.json"))

        let found = ModelPackage.discover(in: root)
        #expect(found.map(\.displayName) == ["Alpha", "smollm2-135m-instruct"])
        #expect(found[0].chatTemplate == .openelm)
        #expect(found[0].coreMLModelURL?.lastPathComponent == "z.mlmodelc")
        #expect(found[1].coreMLModelURL?.lastPathComponent == "model.mlpackage")
        #expect(found[1].tokenizerURL.lastPathComponent == "tokenizer.json")
        #expect(found[1].chatTemplate == .chatml)
    }
}
