#!/usr/bin/env bash
# Runs the whole test suite in release mode. Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --build-tests -Xswiftc -enable-testing >&2
swift test -c release -Xswiftc -enable-testing --skip-build
