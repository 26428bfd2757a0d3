import Foundation
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif

/// Which hardware and OS a report came from.
public struct DeviceInfo: Codable, Equatable, Sendable {
    /// Hardware identifier such as "iPhone16,1" (simulator: the simulated model; Linux: the machine name).
    public var model: String
    public var osName: String
    public var osVersion: String

    public init(model: String, osName: String, osVersion: String) {
        self.model = model
        self.osName = osName
        self.osVersion = osVersion
    }

    enum CodingKeys: String, CodingKey {
        case model, osName = "os_name", osVersion = "os_version"
    }

    public static func current() -> DeviceInfo {
        var info = utsname()
        _ = uname(&info)
        var machine = withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if let simulated = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] { machine = simulated }
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return DeviceInfo(model: machine, osName: osName, osVersion: "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)")
    }

    static var osName: String {
        #if os(iOS)
        return "iOS"
        #elseif os(visionOS)
        return "visionOS"
        #elseif os(macOS)
        return "macOS"
        #elseif os(Linux)
        return "Linux"
        #else
        return "unknown"
        #endif
    }
}
