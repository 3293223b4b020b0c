#!/usr/bin/env bash
# Fuzzes one of tangent's file readers with libFuzzer (swiftc -sanitize=fuzzer,address):
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]
# TARGET: safetensors, features, feature-metadata (values in a feature file's header), jsonl, csv, tsv, config, labels, report,
# vocab, sentencepiece, tokenizer-json, hf-config, tokenizer-config, safetensors-index (Hugging Face files; JSON as edits
# of its values), or all (each
# for SECONDS). Starts from the committed seeds in Fuzz/corpus/TARGET and keeps what it
# finds in .build/fuzz/corpus/TARGET, so a later run resumes where this one stopped.
# Memory is bounded (-rss_limit_mb, -malloc_limit_mb) and an input that runs longer than
# 10 s is a hang. A crash, leak, hang or memory excess stops the run with a non-zero exit
# and leaves the input in .build/fuzz/artifacts/; the last line gives executions and coverage.
# TANGENT_FUZZ_NO_BUILD=1 skips the build (long runs while the sources change).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(safetensors features feature-metadata jsonl csv tsv config labels report vocab sentencepiece tokenizer-json hf-config tokenizer-config safetensors-index)
[ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer options]; TARGET: ${targets[*]} or all" >&2; exit 2; }
target=$1; seconds=$2; shift 2
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "error: SECONDS must be a positive whole number (got '$seconds')" >&2; exit 2; }
if [ "$target" = all ]; then
  for t in "${targets[@]}"; do "$0" "$t" "$seconds" "$@"; done
  exit 0
fi
[[ " ${targets[*]} " == *" $target "* ]] || { echo "error: unknown fuzz target '$target' (use: ${targets[*]} or all)" >&2; exit 2; }
# TANGENT_FUZZ_NO_BUILD=1 reuses the last build (long runs while the sources change).
if [ "${TANGENT_FUZZ_NO_BUILD:-0}" != 1 ]; then
  scripts/setup.sh
  # SwiftPM keeps a path dependency's file list until the manifest changes: after a source
  # file was added to the main package, make it read the manifest again.
  if [ -e Fuzz/.build/release.yaml ] && [ -n "$(find Sources -newer Fuzz/.build/release.yaml -print -quit)" ]; then
    touch Fuzz/Package.swift
  fi
  (cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >&2)
fi
corpus=.build/fuzz/corpus/$target; artifacts=.build/fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts"
# A private copy, so that a rebuild for another target never replaces a running binary.
bin=.build/fuzz/TangentFuzz-$target
cp Fuzz/.build/release/TangentFuzz "$bin.tmp" && mv "$bin.tmp" "$bin"
log=.build/fuzz/$target.log
echo "fuzzing $target for ${seconds}s (corpus $corpus, log $log)" >&2
rc=0
# A SentencePiece model carries its normalization table (about 240 KB): room for a whole one.
maxlen=65536; [ "$target" = sentencepiece ] && maxlen=262144
TANGENT_FUZZ_TARGET=$target ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 "$bin" "$corpus" "Fuzz/corpus/$target" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=$maxlen \
  -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" > "$log" 2>&1 || rc=$?
# A run that never started (no coverage lines) must still say so, not end silently.
execs=$(LC_ALL=C sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
peak=$(LC_ALL=C sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1 || true)
if [ "$rc" -ne 0 ]; then
  grep -aE 'ERROR|SUMMARY|Fatal error|Test unit written' "$log" | head -20 >&2 || true
  echo "$target: FAILED after ${execs:-?} executions ($cov); input and log: $artifacts/, $log" >&2
  exit 1
fi
echo "$target: ${execs:-?} executions in ${seconds}s, $cov, peak RSS ${peak:-?} MiB, corpus $(ls "$corpus" | wc -l) inputs, 0 crashes"
