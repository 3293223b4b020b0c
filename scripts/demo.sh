#!/usr/bin/env bash
# The main job on the shipped default: explain two predictions of the shipped
# movie-snippets model by its training texts (proj-trNTK surrogate, K = 1024).
# The first run featurizes the 8,442 training texts and fits the surrogate (about
# 40 seconds on 2 cores; cached in features/), later runs take about a second.
# Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product tangent >&2
bin=.build/release/tangent
$bin attribute --model models/movie-snippets --train data/movie-snippets/train.jsonl \
  --kernel proj-trntk --proj-dim 1024 --top 5 \
  --text "A gorgeous, moving film with a superb cast." \
  --text "Tedious, overlong and utterly forgettable."
