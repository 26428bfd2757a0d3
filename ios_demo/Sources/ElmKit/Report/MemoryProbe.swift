import Foundation
#if canImport(Darwin)
import Darwin
#endif

/// The process's memory use in MB, sampled by the benchmark to report a peak.
///
/// Darwin: `phys_footprint` from `task_info(TASK_VM_INFO)`, the number Xcode's memory gauge and jetsam use.
/// Linux: `VmRSS` from /proc/self/status. Other systems: nil (the report then says null).
public enum MemoryProbe {
    public static func footprintMB() -> Double? {
        #if canImport(Darwin)
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let status = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard status == KERN_SUCCESS else { return nil }
        return Double(info.phys_footprint) / 1_048_576
        #elseif os(Linux)
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
            return kb.map { $0 / 1024 }
        }
        return nil
        #else
        return nil
        #endif
    }
}
