#if canImport(CoreML)
import Accelerate
import CoreML
import Foundation

/// The Core ML side of `KVCacheEngine`: one exported multifunction package (iOS 18 / macOS 15: functions +
/// `MLState`), called exactly as the engine asks. All chunking, padding and position logic is in the engine, so
/// it is the same code the Linux tests replay against the host's MIL interpreter.
///
/// Contract (names come from `CoreMLContract`, i.e. manifest.json when it overrides them):
/// - function "prefill": `input_ids` Int32 [1, C], `input_pos` Int32 [C], `logits_row` Int32 [1]; C = manifest
///   `prefill_chunk`; output `logits` [1, 1, vocab], the row `logits_row` names (manifest `prefill_logits: "row"`;
///   older packages take no `logits_row` and return [1, C, vocab]).
/// - function "decode": `input_ids` Int32 [1, 1], `input_pos` Int32 [1]; `logits` [1, 1, vocab].
/// - function "verify" (when manifest `functions` lists it): `input_ids` Int32 [1, N], `input_pos` Int32 [N];
///   N = manifest `verify_tokens`; `logits` [1, N, vocab].
/// - `logits` is Float16 (or Float32); the KV caches are states.
/// The functions are loaded from the same compiled model and share one `MLState`, so the prefill writes the
/// cache that decode and verify then read. Not thread-safe: `ModelHost` owns it and serialises every call.
public final class CoreMLBackend: PredictionBackend {
    public let vocabularySize: Int
    public let contract: CoreMLContract
    /// The units the model was loaded with (what a device report must name, whatever the picker says now).
    public let computeUnits: MLComputeUnits
    private let prefillModel: MLModel
    private let decodeModel: MLModel
    /// The verify function, when the manifest lists one.
    let verifyModel: MLModel?
    private var state: MLState

    public enum LoadError: Error, CustomStringConvertible {
        case missingManifestValue(String)
        case badOutput(String)

        public var description: String {
            switch self {
            case let .missingManifestValue(key): return "manifest.json has no usable \(key)"
            case let .badOutput(what): return "unexpected model output: \(what)"
            }
        }
    }

    /// Loads the package's functions and returns the engine that drives them.
    /// - Parameters:
    ///   - compiledModelURL: a `.mlmodelc` directory (see `CoreMLModelCompiler`).
    ///   - vocabularySizeHint: used when the model description does not state the logits width.
    public static func loadEngine(compiledModelURL: URL, manifest: ModelManifest, computeUnits: MLComputeUnits = .all,
                                  vocabularySizeHint: Int? = nil) throws -> KVCacheEngine {
        let backend = try CoreMLBackend(compiledModelURL: compiledModelURL, manifest: manifest, computeUnits: computeUnits,
                                        vocabularySizeHint: vocabularySizeHint)
        let inputShape = backend.prefillModel.modelDescription.inputDescriptionsByName[backend.contract.inputIds]?
            .multiArrayConstraint?.shape.map(\.intValue)
        guard let chunk = manifest.prefillChunk ?? inputShape?.last, chunk > 0 else {
            throw LoadError.missingManifestValue("prefill_chunk")
        }
        if let declared = inputShape?.last, declared > 1, declared != chunk {
            throw LoadError.badOutput("prefill input_ids take \(declared) tokens but manifest prefill_chunk is \(chunk)")
        }
        guard let context = manifest.contextLength, context > 0 else { throw LoadError.missingManifestValue("context_length") }
        if backend.verifyModel != nil, (manifest.verifyTokens ?? 0) < 2 {
            throw LoadError.missingManifestValue("verify_tokens")
        }
        return KVCacheEngine(backend: backend, manifest: manifest, contextLength: context, prefillChunkLength: chunk)
    }

    init(compiledModelURL: URL, manifest: ModelManifest, computeUnits: MLComputeUnits, vocabularySizeHint: Int?) throws {
        contract = manifest.coreML
        self.computeUnits = computeUnits
        func load(_ function: String) throws -> MLModel {
            let configuration = MLModelConfiguration()
            configuration.computeUnits = computeUnits
            configuration.functionName = function
            return try MLModel(contentsOf: compiledModelURL, configuration: configuration)
        }
        prefillModel = try load(contract.prefillFunction)
        decodeModel = try load(contract.decodeFunction)
        verifyModel = try manifest.functions.contains("verify") ? load(contract.verifyFunction) : nil
        state = prefillModel.makeState()
        let logitsShape = decodeModel.modelDescription.outputDescriptionsByName[contract.logits]?.multiArrayConstraint?.shape.map(\.intValue)
        guard let vocab = logitsShape?.last.flatMap({ $0 > 1 ? $0 : nil }) ?? vocabularySizeHint else {
            throw LoadError.badOutput("no logits width in the model description and no vocabulary size hint")
        }
        vocabularySize = vocab
    }

    public func makeFreshState() throws {
        state = prefillModel.makeState()
    }

    public func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], logitsRow: Int32?,
                        rows: Range<Int>) throws -> [[Float]] {
        let count = inputIds.count
        let ids = try MLMultiArray(shape: [1, NSNumber(value: count)], dataType: .int32)
        let positions = try MLMultiArray(shape: [NSNumber(value: count)], dataType: .int32)
        ids.withUnsafeMutableBytes { raw, _ in
            let p = raw.bindMemory(to: Int32.self)
            for i in 0..<count { p[i] = inputIds[i] }
        }
        positions.withUnsafeMutableBytes { raw, _ in
            let p = raw.bindMemory(to: Int32.self)
            for i in 0..<count { p[i] = inputPositions[i] }
        }
        let model: MLModel
        switch function {
        case .prefill: model = prefillModel
        case .decode: model = decodeModel
        case .verify:
            guard let verifyModel else { throw LoadError.missingManifestValue("functions: verify") }
            model = verifyModel
        }
        var features: [String: MLFeatureValue] = [
            contract.inputIds: MLFeatureValue(multiArray: ids),
            contract.inputPositions: MLFeatureValue(multiArray: positions),
        ]
        if let logitsRow {
            let row = try MLMultiArray(shape: [1], dataType: .int32)
            row[0] = NSNumber(value: logitsRow)
            features[contract.logitsRow] = MLFeatureValue(multiArray: row)
        }
        let inputs = try MLDictionaryFeatureProvider(dictionary: features)
        let output = try model.prediction(from: inputs, using: state, options: MLPredictionOptions())
        guard let logits = output.featureValue(for: contract.logits)?.multiArrayValue else {
            throw LoadError.badOutput("no multi-array named \(contract.logits)")
        }
        return try CoreMLBackend.rows(of: logits, rows, vocabulary: vocabularySize)
    }

    /// Rows `wanted` of a [1, T, V] (or [T, V]) logits array as Float, honouring the array's strides.
    static func rows(of array: MLMultiArray, _ wanted: Range<Int>, vocabulary: Int) throws -> [[Float]] {
        let shape = array.shape.map(\.intValue)
        let strides = array.strides.map(\.intValue)
        guard let width = shape.last, width == vocabulary, shape.count >= 2 else {
            throw LoadError.badOutput("logits shape \(shape), expected [..., T, \(vocabulary)]")
        }
        let rowStride = strides[shape.count - 2]
        let columnStride = strides[shape.count - 1]
        guard wanted.upperBound <= shape[shape.count - 2] else { throw LoadError.badOutput("logits have \(shape[shape.count - 2]) rows") }

        return array.withUnsafeBytes { raw -> [[Float]] in
            wanted.map { r -> [Float] in
                var row = [Float](repeating: 0, count: width)
                switch array.dataType {
                case .float16 where columnStride == 1:
                    let base = raw.baseAddress!.advanced(by: r * rowStride * 2)
                    row.withUnsafeMutableBytes { out in
                        var src = vImage_Buffer(data: UnsafeMutableRawPointer(mutating: base), height: 1,
                                                width: vImagePixelCount(width), rowBytes: width * 2)
                        var dst = vImage_Buffer(data: out.baseAddress!, height: 1, width: vImagePixelCount(width), rowBytes: width * 4)
                        _ = vImageConvert_Planar16FtoPlanarF(&src, &dst, vImage_Flags(kvImageNoFlags))
                    }
                case .float32 where columnStride == 1:
                    let p = raw.bindMemory(to: Float.self)
                    for i in 0..<width { row[i] = p[r * rowStride + i] }
                default:
                    let leading = [Int](repeating: 0, count: shape.count - 2)
                    for i in 0..<width {
                        row[i] = array[(leading + [r, i]).map { NSNumber(value: $0) }].floatValue
                    }
                }
                return row
            }
        }
    }
}

/// Compiles an `.mlpackage` once and keeps the `.mlmodelc` in Application Support, keyed by the model's content
/// (`PackageFingerprint`), so two packages with the same folder name never share a compiled model.
public enum CoreMLModelCompiler {
    public static func compiledModel(for package: ModelPackage) async throws -> URL {
        guard let source = package.coreMLModelURL else { throw CoreMLBackend.LoadError.missingManifestValue("model_file") }
        if source.pathExtension == "mlmodelc" { return source }
        let fm = FileManager.default
        let cacheRoot = try fm.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("CompiledModels", isDirectory: true)
        try fm.createDirectory(at: cacheRoot, withIntermediateDirectories: true)
        let target = cacheRoot.appendingPathComponent(try PackageFingerprint.of(source) + ".mlmodelc")
        if fm.fileExists(atPath: target.path) { return target }
        let compiled = try await MLModel.compileModel(at: source)
        do {
            try fm.moveItem(at: compiled, to: target)
        } catch where fm.fileExists(atPath: target.path) {
            try? fm.removeItem(at: compiled)  // compiled meanwhile by another load of the same content
        }
        return target
    }
}

extension MLComputeUnits {
    /// The name written to device reports.
    public var reportName: String {
        switch self {
        case .all: return "all"
        case .cpuAndNeuralEngine: return "cpuAndNeuralEngine"
        case .cpuAndGPU: return "cpuAndGPU"
        case .cpuOnly: return "cpuOnly"
        @unknown default: return "unknown"
        }
    }
}
#endif
