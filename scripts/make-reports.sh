#!/usr/bin/env bash
# Writes reports/NAME/report.{json,md} for the shipped models with the kernels spec's
# protocol: a seeded sample of 1000 training and 500 test texts (trec6: 800/400), K = 4096.
#   scripts/make-reports.sh [movie-snippets|sms-spam|trec6 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product tangent >&2
bin=.build/release/tangent
sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(movie-snippets sms-spam trec6)
for name in "${sets[@]}"; do
  train=1000; test=500
  [ "$name" = trec6 ] && { train=800; test=400; }
  $bin compare --model "models/$name" --train "data/$name" --test "data/$name" \
    --kernels proj-trntk,proj-pntk,embedding,ck,grad-cos,if-head,if-proj --proj-dim 4096 --seed 0 \
    --max-train "$train" --max-test "$test" --out "reports/$name" --overwrite
done
