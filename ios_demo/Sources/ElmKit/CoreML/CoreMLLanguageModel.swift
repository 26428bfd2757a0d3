#if canImport(CoreML)
import Accelerate
import CoreML
import Foundation

/// `LanguageModel` over an exported multifunction Core ML package (iOS 18 / macOS 15: functions + `MLState`).
///
/// Contract (provisional; names come from `CoreMLContract`, i.e. manifest.json when it overrides them):
/// - function "prefill": `input_ids` Int32 [1, C], `input_pos` Int32 [C]; C = manifest `prefill_chunk`.
/// - function "decode": `input_ids` Int32 [1, 1], `input_pos` Int32 [1].
/// - output `logits` Float16 (or Float32) [1, T, vocab]; KV caches are states `k_cache_{i}` / `v_cache_{i}`.
/// Both functions are loaded from the same compiled model and share one `MLState`, so the prefill writes the
/// cache that decode then reads. A short chunk is padded at the end (positions continue past the real tokens);
/// the model masks by position, and later calls overwrite whatever the padding wrote.
/// Not thread-safe: hand it between tasks freely, but run one call at a time (the `MLState` is shared).
public final class CoreMLLanguageModel: LanguageModel, @unchecked Sendable {
    public let vocabularySize: Int
    public let contextLength: Int
    public let prefillChunkLength: Int
    public let contract: CoreMLContract
    private let prefillModel: MLModel
    private let decodeModel: MLModel
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

    /// - Parameters:
    ///   - compiledModelURL: a `.mlmodelc` directory (see `CoreMLModelCompiler`).
    ///   - vocabularySizeHint: used when the model description does not state the logits width.
    public init(compiledModelURL: URL, manifest: ModelManifest, computeUnits: MLComputeUnits = .all, vocabularySizeHint: Int? = nil) throws {
        contract = manifest.coreML
        func load(_ function: String) throws -> MLModel {
            let configuration = MLModelConfiguration()
            configuration.computeUnits = computeUnits
            configuration.functionName = function
            return try MLModel(contentsOf: compiledModelURL, configuration: configuration)
        }
        prefillModel = try load(contract.prefillFunction)
        decodeModel = try load(contract.decodeFunction)
        state = prefillModel.makeState()

        let inputShape = prefillModel.modelDescription.inputDescriptionsByName[contract.inputIds]?.multiArrayConstraint?.shape.map(\.intValue)
        guard let chunk = manifest.prefillChunk ?? inputShape?.last, chunk > 0 else {
            throw LoadError.missingManifestValue("prefill_chunk")
        }
        if let declared = inputShape?.last, declared > 1, declared != chunk {
            throw LoadError.badOutput("prefill input_ids take \(declared) tokens but manifest prefill_chunk is \(chunk)")
        }
        guard let context = manifest.contextLength, context > 0 else { throw LoadError.missingManifestValue("context_length") }
        let logitsShape = decodeModel.modelDescription.outputDescriptionsByName[contract.logits]?.multiArrayConstraint?.shape.map(\.intValue)
        guard let vocab = logitsShape?.last.flatMap({ $0 > 1 ? $0 : nil }) ?? vocabularySizeHint else {
            throw LoadError.badOutput("no logits width in the model description and no vocabulary size hint")
        }
        prefillChunkLength = chunk
        contextLength = context
        vocabularySize = vocab
    }

    public func reset() throws {
        state = prefillModel.makeState()
    }

    public func prefill(_ tokens: [Int], at position: Int, allLogits: Bool) throws -> [[Float]] {
        precondition((1...prefillChunkLength).contains(tokens.count), "prefill takes 1...\(prefillChunkLength) tokens")
        if position + prefillChunkLength > contextLength {
            // Padding would have to reuse the last cache position and could overwrite a real token there.
            var rows: [[Float]] = []
            for (i, t) in tokens.enumerated() { rows.append(try decode(t, at: position + i)) }
            return allLogits ? rows : [rows[rows.count - 1]]
        }
        let c = prefillChunkLength
        let ids = try MLMultiArray(shape: [1, NSNumber(value: c)], dataType: .int32)
        let positions = try MLMultiArray(shape: [NSNumber(value: c)], dataType: .int32)
        ids.withUnsafeMutableBytes { raw, _ in
            let p = raw.bindMemory(to: Int32.self)
            for i in 0..<c { p[i] = Int32(i < tokens.count ? tokens[i] : tokens[tokens.count - 1]) }
        }
        positions.withUnsafeMutableBytes { raw, _ in
            let p = raw.bindMemory(to: Int32.self)
            for i in 0..<c { p[i] = Int32(position + i) }
        }
        let logits = try run(prefillModel, ids: ids, positions: positions)
        let wanted = allLogits ? 0..<tokens.count : (tokens.count - 1)..<tokens.count
        return try CoreMLLanguageModel.rows(of: logits, wanted, vocabulary: vocabularySize)
    }

    public func decode(_ token: Int, at position: Int) throws -> [Float] {
        let ids = try MLMultiArray(shape: [1, 1], dataType: .int32)
        let positions = try MLMultiArray(shape: [1], dataType: .int32)
        ids.withUnsafeMutableBytes { raw, _ in raw.bindMemory(to: Int32.self)[0] = Int32(token) }
        positions.withUnsafeMutableBytes { raw, _ in raw.bindMemory(to: Int32.self)[0] = Int32(position) }
        return try CoreMLLanguageModel.rows(of: try run(decodeModel, ids: ids, positions: positions), 0..<1, vocabulary: vocabularySize)[0]
    }

    private func run(_ model: MLModel, ids: MLMultiArray, positions: MLMultiArray) throws -> MLMultiArray {
        let inputs = try MLDictionaryFeatureProvider(dictionary: [
            contract.inputIds: MLFeatureValue(multiArray: ids),
            contract.inputPositions: MLFeatureValue(multiArray: positions),
        ])
        let output = try model.prediction(from: inputs, using: state, options: MLPredictionOptions())
        guard let logits = output.featureValue(for: contract.logits)?.multiArrayValue else {
            throw LoadError.badOutput("no multi-array named \(contract.logits)")
        }
        return logits
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

/// Compiles an `.mlpackage` once and keeps the `.mlmodelc` in Application Support, keyed by package folder name.
public enum CoreMLModelCompiler {
    public static func compiledModel(for package: ModelPackage) async throws -> URL {
        guard let source = package.coreMLModelURL else { throw CoreMLLanguageModel.LoadError.missingManifestValue("files.model") }
        if source.pathExtension == "mlmodelc" { return source }
        let fm = FileManager.default
        let cacheRoot = try fm.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("CompiledModels", isDirectory: true)
        try fm.createDirectory(at: cacheRoot, withIntermediateDirectories: true)
        let target = cacheRoot.appendingPathComponent(package.directory.lastPathComponent + ".mlmodelc")
        let sourceDate = (try? fm.attributesOfItem(atPath: source.path)[.modificationDate] as? Date) ?? .distantFuture
        let targetDate = (try? fm.attributesOfItem(atPath: target.path)[.modificationDate] as? Date) ?? .distantPast
        if fm.fileExists(atPath: target.path), targetDate >= sourceDate { return target }
        let compiled = try await MLModel.compileModel(at: source)
        if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
        try fm.moveItem(at: compiled, to: target)
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
