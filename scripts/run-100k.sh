#!/usr/bin/env bash
# The 100,000-text run on one machine: a synthetic training set (scripts/make_synthetic.py),
# featurized in SHARDS shards one after another (as an array's tasks would run), merged,
# and 100 movie-snippets test texts attributed with the training features streamed from
# the merged file. Each step runs under /usr/bin/time -v; its wall time and peak memory
# go to OUT/steps.tsv. Every step resumes: rerun the script after an interruption.
#
#   scripts/run-100k.sh [OUT [N [SHARDS]]]      (default: features/scale-100k, 100000, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-features/scale-100k}
N=${2:-100000}
SHARDS=${3:-4}
K=${PROJ_DIM:-1024}
BUDGET=${MEMORY_BUDGET:-1GiB}
scripts/setup.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2; }
[ -x .build/release/tangent ] || swift build -c release >&2
T=.build/release/tangent
M=models/movie-snippets
mkdir -p "$OUT"
echo "# run of $(date -u +%FT%TZ): step, wall, peak KiB" >> "$OUT/steps.tsv"
step() {  # step NAME COMMAND...: run under time -v, record wall seconds and peak KiB
    local name=$1; shift
    /usr/bin/time -v -o "$OUT/$name.time" "$@"
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/$name.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/$name.time")
    printf '%s\t%s\t%s\n' "$name" "$wall" "$rss" >> "$OUT/steps.tsv"
    echo "== $name: wall $wall, peak $rss KiB" >&2
}
[ -f "$OUT/train.jsonl" ] || step generate python3 scripts/make_synthetic.py "$OUT/train.jsonl" "$N" 0
head -100 data/movie-snippets/test.jsonl > "$OUT/queries.jsonl"
for i in $(seq 0 $((SHARDS - 1))); do
    step "featurize-$i" "$T" featurize --model "$M" --data "$OUT/train.jsonl" --kernel pntk --proj-dim "$K" \
        --projector sketch --seed 0 --threads 2 --shard "$i/$SHARDS" --out "$OUT/train-pntk.safetensors"
done
if [ ! -f "$OUT/train-pntk.safetensors" ]; then
    step merge "$T" merge "$OUT"/train-pntk.shard-*-of-"$SHARDS".safetensors --out "$OUT/train-pntk.safetensors"
fi
step attribute "$T" attribute --model "$M" --train "$OUT/train.jsonl" --train-features "$OUT/train-pntk.safetensors" \
    --kernel proj-pntk --data "$OUT/queries.jsonl" --top 10 --memory-budget "$BUDGET" --threads 2 --json \
    > "$OUT/attributions.jsonl.tmp" 2> "$OUT/attribute.log"
mv "$OUT/attributions.jsonl.tmp" "$OUT/attributions.jsonl"
ls -l "$OUT"/train-pntk.safetensors
column -t "$OUT/steps.tsv"
