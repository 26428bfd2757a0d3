import Foundation

/// The benchmark report the app exports and `elmexport validate --device-report` reads.
///
/// One schema, documented once: ios_demo/Schemas/device_report.schema.json (and ios_demo/README.md). Keys are
/// snake_case; optional values are written as explicit `null`, never left out, so readers see every key.
public struct DeviceReport: Codable, Equatable, Sendable {
    /// 2: `load_ms` and `greedy_check` added; `settings.compute_units` is the units the model was loaded with.
    public static let schemaVersion = 2

    public var schemaVersion: Int
    public var appVersion: String
    /// ISO 8601 UTC, e.g. "2026-01-31T09:30:00Z".
    public var timestamp: String
    public var device: DeviceInfo
    public var package: PackageInfo
    public var settings: BenchmarkSettings
    public var rounds: [BenchmarkRound]
    public var summary: Summary
    /// Wall time to load the model (compile-cache lookup or compile, then the Core ML load), or nil if unknown.
    public var loadMs: Double?
    /// Greedy tokens for a fixed prompt, so the host can check the device computes the same thing it does.
    public var greedyCheck: GreedyCheck?

    /// Greedy decoding of a fixed question with the package's chat template and system prompt: the same run as
    /// `elmexport generate PACKAGE --prompt "<question>" --max-new-tokens <maxNewTokens>` on the host.
    public struct GreedyCheck: Codable, Equatable, Sendable {
        public static let standardQuestion = "What is the capital of France?"
        public static let standardMaxNewTokens = 32

        /// The user message.
        public var prompt: String
        /// The ids the device's tokenizer made of the rendered chat prompt.
        public var promptIds: [Int]
        public var maxNewTokens: Int
        /// Generated ids, without the end-of-sequence id.
        public var tokenIds: [Int]

        public init(prompt: String, promptIds: [Int], maxNewTokens: Int, tokenIds: [Int]) {
            self.prompt = prompt
            self.promptIds = promptIds
            self.maxNewTokens = maxNewTokens
            self.tokenIds = tokenIds
        }

        enum CodingKeys: String, CodingKey {
            case prompt, promptIds = "prompt_ids", maxNewTokens = "max_new_tokens", tokenIds = "token_ids"
        }
    }

    public struct PackageInfo: Codable, Equatable, Sendable {
        public var name: String
        public var target: String
        public var quantization: String?
        public var contextLength: Int?
        public var prefillChunk: Int?
        public var randomWeights: Bool?

        public init(name: String, target: String, quantization: String?, contextLength: Int?, prefillChunk: Int?, randomWeights: Bool?) {
            self.name = name
            self.target = target
            self.quantization = quantization
            self.contextLength = contextLength
            self.prefillChunk = prefillChunk
            self.randomWeights = randomWeights
        }

        public init(manifest: ModelManifest, fallbackName: String) {
            self.init(name: manifest.name ?? fallbackName, target: manifest.target ?? "coreml", quantization: manifest.quantization,
                      contextLength: manifest.contextLength, prefillChunk: manifest.prefillChunk, randomWeights: manifest.randomWeights)
        }

        enum CodingKeys: String, CodingKey {
            case name, target, quantization
            case contextLength = "context_length", prefillChunk = "prefill_chunk", randomWeights = "random_weights"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(target, forKey: .target)
            try c.encode(quantization, forKey: .quantization)
            try c.encode(contextLength, forKey: .contextLength)
            try c.encode(prefillChunk, forKey: .prefillChunk)
            try c.encode(randomWeights, forKey: .randomWeights)
        }
    }

    public struct Summary: Codable, Equatable, Sendable {
        public var prefillTokensPerSecondMedian: Double
        public var decodeTokensPerSecondMedian: Double
        public var timeToFirstTokenMsMedian: Double
        /// The largest per-round peak, or null when the platform gave none.
        public var peakMemoryMB: Double?

        public init(rounds: [BenchmarkRound]) {
            prefillTokensPerSecondMedian = median(rounds.map(\.prefillTokensPerSecond))
            decodeTokensPerSecondMedian = median(rounds.map(\.decodeTokensPerSecond))
            timeToFirstTokenMsMedian = median(rounds.map(\.timeToFirstTokenMs))
            peakMemoryMB = rounds.compactMap(\.peakMemoryMB).max()
        }

        enum CodingKeys: String, CodingKey {
            case prefillTokensPerSecondMedian = "prefill_tokens_per_s_median"
            case decodeTokensPerSecondMedian = "decode_tokens_per_s_median"
            case timeToFirstTokenMsMedian = "time_to_first_token_ms_median"
            case peakMemoryMB = "peak_memory_mb"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(prefillTokensPerSecondMedian, forKey: .prefillTokensPerSecondMedian)
            try c.encode(decodeTokensPerSecondMedian, forKey: .decodeTokensPerSecondMedian)
            try c.encode(timeToFirstTokenMsMedian, forKey: .timeToFirstTokenMsMedian)
            try c.encode(peakMemoryMB, forKey: .peakMemoryMB)
        }
    }

    public init(appVersion: String, date: Date = Date(), device: DeviceInfo, package: PackageInfo,
                settings: BenchmarkSettings, rounds: [BenchmarkRound], loadMs: Double? = nil, greedyCheck: GreedyCheck? = nil) {
        schemaVersion = DeviceReport.schemaVersion
        self.appVersion = appVersion
        timestamp = DeviceReport.timestampFormatter.string(from: date)
        self.device = device
        self.package = package
        self.settings = settings
        self.rounds = rounds
        summary = Summary(rounds: rounds)
        self.loadMs = loadMs
        self.greedyCheck = greedyCheck
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", appVersion = "app_version"
        case timestamp, device, package, settings, rounds, summary
        case loadMs = "load_ms", greedyCheck = "greedy_check"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(schemaVersion, forKey: .schemaVersion)
        try c.encode(appVersion, forKey: .appVersion)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(device, forKey: .device)
        try c.encode(package, forKey: .package)
        try c.encode(settings, forKey: .settings)
        try c.encode(rounds, forKey: .rounds)
        try c.encode(summary, forKey: .summary)
        try c.encode(loadMs, forKey: .loadMs)  // explicit nulls: readers see every key
        try c.encode(greedyCheck, forKey: .greedyCheck)
    }

    static var timestampFormatter: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f
    }

    /// Pretty, key-sorted JSON: stable to diff and to attach to a bug report.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> DeviceReport { try JSONDecoder().decode(DeviceReport.self, from: data) }

    /// File name for an export, e.g. "device-report-smollm2-2026-01-31T09-30-00Z.json".
    public var suggestedFileName: String {
        let safe = { (s: String) in String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" }) }
        return "device-report-\(safe(package.name))-\(safe(timestamp)).json"
    }
}

/// Median of the values (mean of the middle two for an even count; 0 for none).
public func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let s = values.sorted()
    let mid = s.count / 2
    return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
