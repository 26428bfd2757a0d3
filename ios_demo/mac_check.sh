#!/usr/bin/env bash
# Everything in ios_demo that needs a Mac, in one command (also what .github/workflows/ios.yml runs):
#   1. ElmKit built and tested with the Core ML backend compiled in (Linux builds skip it);
#   2. the app generated from project.yml and built for the iOS simulator with xcodebuild (Swift 6, strict
#      concurrency; unsigned, so no team is needed);
#   3. SmolLM2-135M-Instruct exported to Core ML (int4, context 512, the quickstart's package) and run with real
#      Core ML by `elmexport device-check`, compared with the MIL interpreter.
# Needs macOS 15+, Xcode 16+, XcodeGen (brew install xcodegen) and elmexport installed (pip install -e ".[test]").
# Usage: ios_demo/mac_check.sh [WORK_DIR]   (default: a new temporary directory)
set -euo pipefail
if [ "$(uname -s)" != Darwin ]; then
  echo "mac_check.sh needs macOS (Xcode, Core ML); elsewhere run what Linux can: cd ios_demo && swift build && swift test" >&2
  exit 2
fi
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && work="$(cd "$work" && pwd)"  # absolute: a relative WORK_DIR means the caller's directory
cd "$(dirname "$0")"

echo "== 1/3 swift build && swift test (ElmKit, Core ML backend included)"
swift build
swift test

echo "== 2/3 xcodegen + xcodebuild (ElmDemo, iOS simulator, unsigned)"
xcodegen generate
xcodebuild -project ElmDemo.xcodeproj -scheme ElmDemo -configuration Debug \
  -destination 'generic/platform=iOS Simulator' -derivedDataPath "$work/DerivedData" \
  CODE_SIGNING_ALLOWED=NO build

echo "== 3/3 export SmolLM2-135M-Instruct (Core ML, int4, context 512) and device-check it on real Core ML"
package="$work/smollm2-135m-instruct-coreml-int4"
[ -f "$package/manifest.json" ] || elmexport coreml --quant int4 --context 512 --out "$package"
elmexport device-check "$package" --compute-units all
