#!/usr/bin/env bash
# The main job's cost against featurizing the same texts alone (issue 32): times, in one
# run and from empty caches, (1) `tangent featurize` of the training texts and (2) the
# demo's `tangent attribute` (proj-trNTK, K = 1024, two texts, per-layer shares), and
# prints their ratio with the CPU and the peak memory of each. Run it on an idle machine.
#   scripts/bench-main-job.sh [MODEL_DIR TRAIN_FILE]
# Default: the shipped movie-snippets model and its 8,442 training texts. A Hugging Face
# model directory (e.g. one fine-tuned with `tangent train --init`) works the same way.
# TANGENT_BIN=path runs that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/movie-snippets}
train=${2:-data/movie-snippets/train.jsonl}
scripts/setup.sh
bin=${TANGENT_BIN:-.build/release/tangent}
[ -n "${TANGENT_BIN:-}" ] || swift build -c release --product tangent >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
timed() { /usr/bin/time -o "$work/time" -f "%e %M" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }; cat "$work/time"; }
read -r featurize featurizeKiB < <(timed $bin featurize --model "$model" --data "$train" --kernel trntk --proj-dim 1024 \
  --out "$work/features.safetensors")
read -r attribute attributeKiB < <(timed $bin attribute --model "$model" --train "$train" --kernel proj-trntk \
  --proj-dim 1024 --top 5 --cache "$work/cache" \
  --text "A gorgeous, moving film with a superb cast." --text "Tedious, overlong and utterly forgettable.")
read -r again _ < <(timed $bin attribute --model "$model" --train "$train" --kernel proj-trntk \
  --proj-dim 1024 --top 5 --cache "$work/cache" \
  --text "A gorgeous, moving film with a superb cast." --text "Tedious, overlong and utterly forgettable.")
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
simd=AVX2
grep -qw avx512f /proc/cpuinfo && simd="AVX-512 (OpenBLAS ${OPENBLAS_CORETYPE:-its own choice of kernels})"
echo "machine: $cpu, $(nproc) cores, $simd"
echo "model: $model; training texts: $train ($(grep -c . "$train") lines)"
echo "featurize alone:          $featurize s, peak $((featurizeKiB / 1024)) MiB"
echo "attribute, first run:     $attribute s, peak $((attributeKiB / 1024)) MiB"
echo "attribute, cached:        $again s"
awk -v a="$attribute" -v f="$featurize" 'BEGIN { printf "ratio first run / featurize alone: %.2fx\n", a / f }'
