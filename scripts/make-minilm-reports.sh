#!/usr/bin/env bash
# The full attribution protocol on real fine-tuned encoders (issue 31): for each data set
# named (default: movie-snippets sms-spam trec6), fine-tunes the pretrained
# all-MiniLM-L6-v2 (scripts/minilm.sh) on all its training texts with tangent (3 epochs,
# batch 32, lr 5e-5, max length 64, dropout 0.1, seed 0, checkpoints kept for TracIn), then
# writes reports/minilm-NAME/: an LDS run on the usual seeded sample (1000 training / 500
# test texts; trec6 800 / 400) with 20 subset fine-tunes from the same pretrained weights,
# the noise ceiling (each subset fine-tuned twice), 10 more subset models that choose
# lambda and damping by LDS, ensembles of N = 1, 2, 5 models, every method that applies
# (the surrogates with their influence forms, grad-cos, TracIn, if-head, if-proj, TRAK,
# EK-FAC on the model under study alone, and the class prior), each with its run time; then the comparison report on that
# sample with the LDS beside tau (K = 4096). Every step resumes where it stopped; run times
# and peak memory of each step go to reports/minilm-NAME/times.txt; the LDS run's lds.md,
# lds.json and sample.json are copied there.
# movie-snippets keeps the directories of scripts/make-minilm-report.sh (features/minilm).
#   scripts/make-minilm-reports.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=${TANGENT_BIN:-.build/release/tangent}
[ -n "${TANGENT_BIN:-}" ] || swift build -c release --product tangent >&2
minilm=$(scripts/minilm.sh)
kernels=proj-trntk,proj-pntk,embedding,ck,grad-cos,tracin,if-head,if-proj,trak,ekfac
# EK-FAC on the model under study alone: its features for every damping of the grid take
# about an hour per model at this size on 2 cores (one whitening and sketch per damping).
ensembled=${kernels%,ekfac}
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(movie-snippets sms-spam trec6)
for set in "${sets[@]}"; do
  (
    work=features/minilm-$set
    [ "$set" = movie-snippets ] && work=features/minilm
    out=reports/minilm-$set
    sample=(--max-train 1000 --max-test 500)
    [ "$set" = trec6 ] && sample=(--max-train 800 --max-test 400)
    mkdir -p "$work" "$out"
    timed() { /usr/bin/time -a -o "$out/times.txt" -f "%e s, peak %M KiB: ${*:2}" "$@"; }
    model=$work/model
    train=(train --init "$minilm" --data "data/$set" --out "$model" --epochs 3 --batch-size 32 --lr 5e-5 --max-len 64
           --dropout 0.1 --seed 0 --keep-checkpoints)
    if [ -f "$model/config.json" ] && grep -q '"complete" : false' "$model/config.json"; then
      TANGENT_THREADS=2 timed $bin "${train[@]}" --resume
    elif [ ! -f "$model/config.json" ]; then
      TANGENT_THREADS=2 timed $bin "${train[@]}"
    fi
    TANGENT_THREADS=2 timed $bin lds --data "data/$set" --recipe "$model" "${sample[@]}" --subsets 20 --fraction 0.5 --seed 0 \
      --proj-dim 4096 --ceiling --selection-subsets 10 --ensemble 5 --ensemble-sizes 1,2,5 --kernels "$kernels" --ensemble-kernels "$ensembled" \
      --cache "$work/cache" --out "$work/lds"
    TANGENT_THREADS=2 timed $bin compare --model "$model" --train "data/$set" --test "data/$set" --kernels "$kernels" --ensemble 3 \
      --proj-dim 4096 --seed 0 "${sample[@]}" --lds "$work/lds" --cache "$work/cache" --out "$out" --overwrite
    # The run's results beside the report (the models and features stay in $work): lds.json
    # for `compare --lds` and other readers, sample.json for scripts/peers_lds.py.
    cp "$work/lds/lds.md" "$work/lds/lds.json" "$work/lds/sample.json" "$out/"
  )
done
