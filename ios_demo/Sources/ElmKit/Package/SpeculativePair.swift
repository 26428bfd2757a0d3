import Foundation

/// A speculative pair folder, as `elmexport pair --to coreml` writes it:
///
///     PAIR/
///       pair.json          kind "speculative-pair", k, the target's and the draft's package folder names
///       target-<model>-<quant>/   a Core ML package with a `verify` function of k + 1 tokens
///       draft-<model>-<quant>/    a Core ML package
///
/// Why checked on opening: the draft's ids go straight into the target, and the target must score k + 1 tokens
/// in one call, so a folder that is not such a pair is refused here with what to do, not found out in the middle
/// of a chat. The checks are the ones elmexport/pair.py makes when it opens a pair (read_pair, load_pair).
/// Prompts use the target's chat template, system prompt and end-of-sequence ids, as `elmexport generate PAIR`.
public struct SpeculativePair: Sendable {
    public static let fileName = "pair.json"

    public let directory: URL
    /// Proposals per round.
    public let k: Int
    public let target: ModelPackage
    public let draft: ModelPackage

    public enum PairError: Error, Equatable, CustomStringConvertible {
        case notAPair(String)
        case wrongRuntime(String)
        case targetCannotVerify(String)
        case differentVocabularies(target: Int, draft: Int)

        public var description: String {
            switch self {
            case let .notAPair(what):
                return "\(what): not a speculative pair (kind, k >= 1, target/draft package folders); re-export it with `elmexport pair --to coreml`"
            case let .wrongRuntime(runtime):
                return "a \(runtime) pair: the app runs Core ML pairs; export one with `elmexport pair --to coreml`"
            case let .targetCannotVerify(name):
                return "\(name) has no verify function of k + 1 tokens, so it cannot check the draft's proposals in one call; re-export the pair with `elmexport pair --to coreml`"
            case let .differentVocabularies(t, d):
                return "the draft's vocabulary (\(d)) is not the target's (\(t)); pick a draft with the target's tokenizer"
            }
        }
    }

    /// Whether `directory` holds a pair.json (a pair rather than a single package).
    public static func isPair(_ directory: URL) -> Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent(fileName).path)
    }

    public init(directory: URL) throws {
        let path = directory.appendingPathComponent(Self.fileName)
        guard let json = try? JSONValue.parse(contentsOf: path), json["kind"]?.stringValue == "speculative-pair",
              let k = json["k"]?.intValue, k >= 1,
              let targetFolder = Self.packageFolder(json["target"]), let draftFolder = Self.packageFolder(json["draft"]) else {
            throw PairError.notAPair(path.path)
        }
        let runtime = json["runtime"]?.stringValue ?? "coreml"
        guard runtime == "coreml" else { throw PairError.wrongRuntime(runtime) }
        let target = try ModelPackage(directory: directory.appendingPathComponent(targetFolder))
        let draft = try ModelPackage(directory: directory.appendingPathComponent(draftFolder))
        guard target.manifest.functions.contains("verify"), target.manifest.verifyTokens == k + 1 else {
            throw PairError.targetCannotVerify(target.displayName)
        }
        let vocabulary = { (package: ModelPackage) in package.manifest.modelConfig?["vocab_size"]?.intValue }
        if let t = vocabulary(target), let d = vocabulary(draft), t != d {
            throw PairError.differentVocabularies(target: t, draft: d)
        }
        self.directory = directory
        self.k = k
        self.target = target
        self.draft = draft
    }

    /// The decoder over the two packages' engines; `engine` opens a package (Core ML on a device, a replay in
    /// tests) and is called for the target first.
    public func decoder(engine: (ModelPackage) throws -> any LanguageModel) throws -> SpeculativeDecoder {
        let targetModel = try engine(target)
        return SpeculativeDecoder(target: targetModel, draft: try engine(draft), k: k)
    }

    /// The prompt `elmexport generate PAIR --prompt` sends: the target's chat template and system prompt.
    public func chatPrompt(_ question: String) -> String {
        target.chatTemplate.render([.user(question)], defaultSystemPrompt: target.manifest.systemPrompt)
    }

    /// Stop ids: the target's end-of-sequence ids.
    public var stopTokenIds: Set<Int> { Set(target.manifest.eosTokenIds) }

    /// A package folder name inside the pair folder (a plain name: the pair cannot point outside itself).
    private static func packageFolder(_ entry: JSONValue?) -> String? {
        guard let name = entry?["package"]?.stringValue, !name.isEmpty, name != ".", name != "..",
              !name.contains("/"), !name.contains("\\") else { return nil }
        return name
    }
}
