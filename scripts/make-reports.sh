#!/usr/bin/env bash
# Writes reports/NAME/report.{json,md,html} and poisoning.{json,md} for the shipped models
# with the kernels spec's protocol: a seeded sample of 1000 training and 500 test texts
# (trec6: 800/400), K = 4096, every kernel. TracIn needs the training checkpoints, which
# are not shipped: the model's recipe is rerun with --keep-checkpoints into features/.
# Each checkpoint carries a training record (per-epoch learning rates, data fingerprint,
# options, architecture); `compare` checks that record against the shipped model's
# config.json and refuses checkpoints of another recipe. Training is bit-reproducible
# only on the same OpenBLAS kernels and thread count, so on another CPU the checkpoints
# are those of a retraining with the same recipe: the report says so, with the distance
# between its final weights and the shipped model's. The poisoning benchmark then trains
# a poisoned model on a 2000-text sample. Projected kernels use the default projector
# (the count-sketch); the projection-error view compares it with dense Rademacher
# (root mean square over 4 projection seeds). TRAK averages the model and its 4 latest
# checkpoints before the final epoch. LDS comes from `tangent lds` runs in features/lds/NAME
# (50 subset models each, resumable; the first run on a machine trains them, about 2-10
# minutes per set on 2 cores), made here before the reports so that report.json carries them:
# every subset model trained twice (the noise ceiling), 10 more on other subsets to choose the
# surrogates' lambda by LDS, and the six methods of the ensemble table averaged over 1, 2, 5
# and 10 retrainings. The label audit's benchmark flips 10% of a 2000-text sample, retrains
# with the model's recipe and writes reports/NAME/audit.{json,md,html}.
# lambda is chosen by 5-fold cross-validation on the training texts (--selection network-tau).
#   scripts/make-reports.sh [movie-snippets|sms-spam|trec6 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# TANGENT_BIN: a copy of the binary to use instead (so that building can go on meanwhile).
bin=${TANGENT_BIN:-.build/release/tangent}
[ -n "${TANGENT_BIN:-}" ] || swift build -c release --product tangent >&2
sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(movie-snippets sms-spam trec6)
for name in "${sets[@]}"; do
  train=1000; test=500; classes=()
  [ "$name" = trec6 ] && { train=800; test=400; classes=(--source HUM --target LOC); }
  retrained="features/retrained/$name"
  TANGENT_THREADS=2 $bin train --data "data/$name" --tokenizer "tokenizers/$name.model" --out "$retrained" \
    --d-model 128 --heads 4 --layers 2 --d-ff 512 --max-len 64 \
    --epochs 5 --batch-size 32 --lr 1e-3 --dropout 0.1 --seed 0 --keep-checkpoints --overwrite
  cmp -s "$retrained/model.safetensors" "models/$name/model.safetensors" ||
    echo "note: retraining $name gave other weights than models/$name (other BLAS kernels or threads); TracIn uses the retraining's checkpoints and the report says so" >&2
  kernels=trntk,pntk-norm,trntk-layers,proj-trntk,proj-pntk,embedding,ck,grad-cos,tracin,if-head,if-proj,trak
  TANGENT_THREADS=2 $bin lds --data "data/$name" --recipe "models/$name" --max-train "$train" --max-test "$test" --subsets 50 --fraction 0.5 \
    --seed 0 --proj-dim 4096 --kernels "$kernels" --ensemble 10 --ensemble-sizes 1,2,5,10 \
    --ensemble-kernels trntk,proj-trntk,proj-pntk,grad-cos,if-proj,trak --ceiling --selection-subsets 10 --out "features/lds/$name"
  rm -f "reports/$name/poisoning.json" "reports/$name/poisoning.md"
  $bin compare --model "models/$name" --checkpoints "$retrained/checkpoints" --train "data/$name" --test "data/$name" \
    --kernels "$kernels" --ensemble 5 --proj-dim 4096 --seed 0 --error-seeds 4 \
    --max-train "$train" --max-test "$test" --lds "features/lds/$name" --out "reports/$name" --overwrite
  TANGENT_THREADS=2 $bin audit --model "models/$name" --train "data/$name" --max-train 2000 --flip 0.1 --seed 0 \
    --json "reports/$name/audit.json" --html "reports/$name/audit.html" --overwrite > "reports/$name/audit.md"
  $bin poison --data "data/$name" --tokenizer "tokenizers/$name.model" --max-train 2000 --max-test 500 \
    --fraction 0.05 --k 10,20 --proj-dim 1024 --seed 0 "${classes[@]}" \
    --kernels proj-trntk,proj-pntk,embedding,ck,grad-cos,tracin,if-head,if-proj,trak --ensemble 5 --out "reports/$name" --overwrite
done
