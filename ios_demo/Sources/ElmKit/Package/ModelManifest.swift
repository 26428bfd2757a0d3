import Foundation

/// The `manifest.json` that `elmexport` writes next to an exported model.
///
/// Why tolerant: the exporter's format is young (`format_version`), so every key is optional, unknown keys are
/// ignored, and a value of the wrong type reads as missing rather than failing the whole package.
public struct ModelManifest: Equatable, Sendable {
    public var formatVersion: Int?
    public var name: String?
    /// "coreml", "onnx" or "executorch".
    public var target: String?
    public var modelFamily: String?
    public var modelConfig: JSONValue?
    /// File name of the tokenizer inside the package.
    public var tokenizerFile: String
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// "chatml", "openelm" or nil.
    public var chatTemplate: String?
    /// The system message the exporter's own chat prompts start with (`elmexport generate`), or nil.
    public var systemPrompt: String?
    public var contextLength: Int?
    public var prefillChunk: Int?
    /// The Core ML functions in the package (`prefill`, `decode`, and `verify` when exported with it).
    public var functions: [String]
    /// Tokens per `verify` call (the exporter's `--verify-tokens N`), when the package has that function.
    public var verifyTokens: Int?
    /// "row" when prefill takes `logits_row` and returns that one row; nil for packages whose prefill returns
    /// every row (exported before the input existed).
    public var prefillLogits: String?
    /// The quantization preset's name: the exporter writes an object `{"name": "int4", ...}`; a plain string
    /// (older manifests) is read as the name.
    public var quantization: String?
    public var randomWeights: Bool?
    public var files: JSONValue?
    public var coreML: CoreMLContract

    public init(json: JSONValue) {
        formatVersion = json["format_version"]?.intValue
        name = json["name"]?.stringValue
        target = json["target"]?.stringValue
        modelFamily = json["model"]?["family"]?.stringValue
        modelConfig = json["model"]?["config"]
        tokenizerFile = json["tokenizer"]?.stringValue ?? "tokenizer.json"
        bosTokenId = json["bos_token_id"]?.intValue
        if let list = json["eos_token_ids"]?.arrayValue {
            eosTokenIds = list.compactMap(\.intValue)
        } else {
            eosTokenIds = (json["eos_token_ids"]?.intValue ?? json["eos_token_id"]?.intValue).map { [$0] } ?? []
        }
        chatTemplate = json["chat_template"]?.stringValue
        systemPrompt = json["system_prompt"]?.stringValue
        contextLength = json["context_length"]?.intValue
        prefillChunk = json["prefill_chunk"]?.intValue
        functions = json["functions"]?.arrayValue?.compactMap(\.stringValue) ?? []
        verifyTokens = json["verify_tokens"]?.intValue
        prefillLogits = json["prefill_logits"]?.stringValue
        quantization = json["quantization"]?["name"]?.stringValue ?? json["quantization"]?.stringValue
        randomWeights = json["random_weights"]?.boolValue
        files = json["files"]
        modelFile = json["model_file"]?.stringValue
        coreML = CoreMLContract(json: json["coreml"])
    }

    public init(contentsOf url: URL) throws {
        self.init(json: try JSONValue.parse(contentsOf: url))
    }

    /// The model file the exporter names (`model_file`), if any.
    public var modelFile: String?

    /// A file name listed under `files` for `role` (an object `{"model": "x.mlpackage"}`), if any.
    public func file(forRole role: String) -> String? { files?[role]?.stringValue }

    /// All file names listed under `files`, whether it is an object of names or a list.
    public var listedFiles: [String] {
        if let list = files?.arrayValue { return list.compactMap { $0.stringValue ?? $0["path"]?.stringValue } }
        if let object = files?.objectValue { return object.compactMap { $0.value.stringValue } }
        return []
    }
}

/// Names inside an exported Core ML model. Provisional defaults; a manifest may override any of them under
/// `"coreml": {"prefill_function", "decode_function", "verify_function", "input_ids", "input_pos", "logits_row",
/// "logits"}`.
public struct CoreMLContract: Equatable, Sendable {
    public var prefillFunction = "prefill"
    public var decodeFunction = "decode"
    public var verifyFunction = "verify"
    public var inputIds = "input_ids"
    public var inputPositions = "input_pos"
    /// Prefill's input naming the chunk row it returns.
    public var logitsRow = "logits_row"
    public var logits = "logits"

    public init() {}

    public init(json: JSONValue?) {
        if let v = json?["prefill_function"]?.stringValue { prefillFunction = v }
        if let v = json?["decode_function"]?.stringValue { decodeFunction = v }
        if let v = json?["verify_function"]?.stringValue { verifyFunction = v }
        if let v = json?["logits_row"]?.stringValue { logitsRow = v }
        if let v = json?["input_ids"]?.stringValue { inputIds = v }
        if let v = json?["input_pos"]?.stringValue { inputPositions = v }
        if let v = json?["logits"]?.stringValue { logits = v }
    }
}
