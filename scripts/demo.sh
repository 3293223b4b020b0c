#!/usr/bin/env bash
# The main job on the shipped default: classify texts and evaluate the shipped
# movie-snippets model on its test split. Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product tangent >&2
bin=.build/release/tangent
$bin predict --model models/movie-snippets \
  --text "A gorgeous, moving film with a superb cast." \
  --text "Tedious, overlong and utterly forgettable."
$bin evaluate --model models/movie-snippets --data data/movie-snippets/test.jsonl
