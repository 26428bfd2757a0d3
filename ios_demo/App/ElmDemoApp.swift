#if canImport(SwiftUI)
import SwiftUI

/// The demo app: pick an exported package, chat with it, or benchmark it and export a device report.
@main
struct ElmDemoApp: App {
    @State private var store = ModelStore()

    var body: some Scene {
        WindowGroup {
            TabView {
                ModelPickerView()
                    .tabItem { Label("Models", systemImage: "shippingbox") }
                ChatView()
                    .tabItem { Label("Chat", systemImage: "bubble.left.and.bubble.right") }
                BenchmarkView()
                    .tabItem { Label("Benchmark", systemImage: "speedometer") }
            }
            .environment(store)
            .task { store.refresh() }
        }
    }
}
#endif
