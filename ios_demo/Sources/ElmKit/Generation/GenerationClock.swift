import Foundation

/// A monotonic time source in seconds, injectable so tests can check tokens/s arithmetic exactly.
public protocol GenerationClock: AnyObject {
    func now() -> Double
}

/// Wall-clock time since boot (monotonic, unaffected by clock changes).
public final class SystemClock: GenerationClock {
    public init() {}
    public func now() -> Double { ProcessInfo.processInfo.systemUptime }
}
