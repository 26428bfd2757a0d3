#if canImport(SwiftUI)
import CoreML
import ElmKit
import SwiftUI
import UniformTypeIdentifiers

/// Lists bundled and imported packages; tapping one loads it (compiling the Core ML model on first use).
struct ModelPickerView: View {
    @Environment(ModelStore.self) private var store
    @State private var importing = false

    var body: some View {
        @Bindable var bindableStore = store
        NavigationStack {
            List {
                if let loaded = store.loaded {
                    Section("Loaded") {
                        LabeledContent("Package", value: loaded.package.displayName)
                        LabeledContent("Context", value: "\(loaded.info.contextLength) tokens")
                        LabeledContent("Prefill chunk", value: "\(loaded.info.prefillChunkLength)")
                        LabeledContent("Compute units", value: loaded.info.computeUnits)
                        LabeledContent("Load time", value: String(format: "%.1f s", loaded.info.loadSeconds))
                    }
                }
                Section("Compute units") {
                    Picker("Compute units", selection: $bindableStore.computeUnits) {
                        Text("All").tag(MLComputeUnits.all)
                        Text("CPU + Neural Engine").tag(MLComputeUnits.cpuAndNeuralEngine)
                        Text("CPU + GPU").tag(MLComputeUnits.cpuAndGPU)
                        Text("CPU only").tag(MLComputeUnits.cpuOnly)
                    }
                    .pickerStyle(.menu)
                }
                Section("Packages") {
                    if store.entries.isEmpty {
                        Text("No packages. Bundle one under App/Resources/Models or import a folder.")
                            .foregroundStyle(.secondary)
                    }
                    ForEach(store.entries) { entry in
                        Button {
                            Task { await store.load(entry.package) }
                        } label: {
                            PackageRow(entry: entry, isLoading: store.loadingName == entry.package.displayName)
                        }
                        .disabled(store.loadingName != nil)
                    }
                }
                if let name = store.importingName {
                    Section { Label("Importing \(name)…", systemImage: "arrow.down.circle") }
                }
                if let message = store.errorMessage {
                    Section { Text(message).foregroundStyle(.red).font(.footnote) }
                }
            }
            .navigationTitle("Models")
            .toolbar {
                Button("Import", systemImage: "square.and.arrow.down") { importing = true }
                Button("Refresh", systemImage: "arrow.clockwise") { store.refresh() }
            }
            .fileImporter(isPresented: $importing, allowedContentTypes: [.folder]) { result in
                if case let .success(url) = result { store.importPackage(from: url) }
            }
        }
    }
}

private struct PackageRow: View {
    let entry: ModelStore.Entry
    let isLoading: Bool

    var body: some View {
        let m = entry.package.manifest
        let details: [String?] = [m.target, m.quantization, m.contextLength.map { "ctx \($0)" }, m.chatTemplate,
                                  m.randomWeights == true ? "random weights" : nil]
        HStack {
            VStack(alignment: .leading, spacing: 2) {
                Text(entry.package.displayName).font(.headline)
                Text(details.compactMap { $0 }.joined(separator: " · "))
                    .font(.caption).foregroundStyle(.secondary)
                Text(entry.source.rawValue).font(.caption2).foregroundStyle(.tertiary)
            }
            Spacer()
            if isLoading { ProgressView() }
        }
    }
}
#endif
