import Foundation

/// A key for a model's contents: every file under a path (relative name, size, bytes), hashed.
///
/// Why content and not the folder name or a date: two packages with the same folder name (two quantizations of
/// one model, an update copied over an old one) must never share a compiled model, and a copy keeps no
/// trustworthy dates. Not cryptographic (FNV-1a over 64-bit words): it guards against accidents, not attackers.
/// It reads the whole model once per load (about a second per gigabyte on a phone's flash).
public enum PackageFingerprint {
    public static func of(_ url: URL) throws -> String {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: url.path])
        }
        var files: [String] = [""]
        if isDirectory.boolValue {
            files = (fm.enumerator(atPath: url.path)?.allObjects as? [String] ?? []).filter { relative in
                var dir: ObjCBool = false
                return fm.fileExists(atPath: url.appendingPathComponent(relative).path, isDirectory: &dir) && !dir.boolValue
            }.sorted()
        }
        var hasher = WordHasher()
        for relative in files {
            let file = relative.isEmpty ? url : url.appendingPathComponent(relative)
            hasher.feed(Array(relative.utf8))
            let handle = try FileHandle(forReadingFrom: file)
            defer { try? handle.close() }
            var size: UInt64 = 0
            while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
                hasher.feed(chunk)
                size += UInt64(chunk.count)
            }
            hasher.feed(word: size)
        }
        return String(format: "%016llx", hasher.value)
    }
}

/// FNV-1a over 8-byte words (a trailing partial word is zero-padded; lengths are fed separately).
struct WordHasher {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func feed(word: UInt64) {
        value = (value ^ word) &* 0x0000_0100_0000_01b3
    }

    mutating func feed<Bytes: DataProtocol>(_ bytes: Bytes) {
        var word: UInt64 = 0
        var filled = 0
        for region in bytes.regions {
            region.withUnsafeBytes { raw in
                for byte in raw {
                    word |= UInt64(byte) << (8 * filled)
                    filled += 1
                    if filled == 8 { feed(word: word); word = 0; filled = 0 }
                }
            }
        }
        if filled > 0 { feed(word: word) }
        feed(word: UInt64(bytes.count))
    }
}
