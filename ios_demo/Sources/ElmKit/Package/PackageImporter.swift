import Foundation

/// Copies a package folder the user picked into the app's models folder, safely.
///
/// Why a type of its own: a naive "delete the old copy, then copy" deletes the package itself when the user
/// re-picks one that already lives in the models folder, and leaves nothing usable when a copy of a gigabyte is
/// interrupted. Here the copy goes to a hidden staging folder first and replaces the old copy only once it is
/// complete and has a readable manifest; a package already in place is returned untouched. Synchronous and slow
/// for big models: call it off the main thread.
public enum PackageImporter {
    public enum ImportError: Error, Equatable, CustomStringConvertible {
        case notAPackage(String)
        case speculativePair(String)
        public var description: String {
            switch self {
            case let .notAPackage(name): return "\(name) has no readable manifest.json: pick the package folder elmexport wrote"
            case let .speculativePair(name):
                return "\(name) is a speculative pair, which the app does not run yet: pick its target-… or draft-… folder"
            }
        }
    }

    /// Imports `source` into `root` (as `root/<source folder name>`) and returns the package there.
    public static func importPackage(from source: URL, into root: URL) throws -> ModelPackage {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        let target = root.appendingPathComponent(source.lastPathComponent, isDirectory: true)
        if source.standardizedFileURL.resolvingSymlinksInPath().path == target.standardizedFileURL.resolvingSymlinksInPath().path {
            return try ModelPackage(directory: target)  // already here: nothing to copy, nothing to delete
        }
        guard !SpeculativePair.isPair(source) else { throw ImportError.speculativePair(source.lastPathComponent) }
        guard (try? ModelPackage(directory: source)) != nil else { throw ImportError.notAPackage(source.lastPathComponent) }
        let staging = root.appendingPathComponent(".incoming-\(UUID().uuidString)", isDirectory: true)
        do {
            try fm.copyItem(at: source, to: staging)
            _ = try ModelPackage(directory: staging)
            if fm.fileExists(atPath: target.path) {
                // Renames only, so the old copy stays whole until the new one is in place.
                let outgoing = root.appendingPathComponent(".outgoing-\(UUID().uuidString)", isDirectory: true)
                try fm.moveItem(at: target, to: outgoing)
                do {
                    try fm.moveItem(at: staging, to: target)
                } catch {
                    try? fm.moveItem(at: outgoing, to: target)
                    throw error
                }
                try? fm.removeItem(at: outgoing)
            } else {
                try fm.moveItem(at: staging, to: target)
            }
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
        return try ModelPackage(directory: target)
    }
}
