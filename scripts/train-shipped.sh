#!/usr/bin/env bash
# Retrains the shipped tokenizers and models from the shipped data sets, exactly as
# committed (deterministic for a fixed thread count; the committed ones used 2).
#   scripts/train-shipped.sh [movie-snippets|sms-spam|trec6 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product tangent >&2
bin=.build/release/tangent
vocab_for() { case "$1" in movie-snippets) echo 4000;; sms-spam) echo 3000;; trec6) echo 2000;; esac; }
sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(movie-snippets sms-spam trec6)
for name in "${sets[@]}"; do
  $bin tokenizer train --data "data/$name" --vocab-size "$(vocab_for "$name")" --out "tokenizers/$name.model" --overwrite
  TANGENT_THREADS=2 $bin train --data "data/$name" --tokenizer "tokenizers/$name.model" --out "models/$name" \
    --d-model 128 --heads 4 --layers 2 --d-ff 512 --max-len 64 \
    --epochs 5 --batch-size 32 --lr 1e-3 --dropout 0.1 --seed 0 --overwrite
done
