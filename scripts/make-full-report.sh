#!/usr/bin/env bash
# Writes reports/movie-snippets-full: every kernel with features on all 8,442 training and
# 2,124 test texts of movie-snippets at K = 4096 (the exact kernels and TracIn are left
# out: quadratic in the texts, and no checkpoints are shipped). About 7 minutes and
# 1.7 GiB on 2 cores; features are cached in features/full (about 1.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product tangent >&2
/usr/bin/time -v .build/release/tangent compare --model models/movie-snippets --train data/movie-snippets --test data/movie-snippets \
  --kernels proj-trntk,proj-pntk,embedding,ck,grad-cos,if-head,if-proj --proj-dim 4096 --seed 0 --error-dims "" \
  --cache features/full --out reports/movie-snippets-full --overwrite
