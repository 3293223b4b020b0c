#!/usr/bin/env bash
# Featurization speed on Hugging Face architectures against PyTorch, in one run on the
# same threads: `tangent bench featurize --model-config` (end to end: per-example
# gradients of the pNTK output and the count-sketch to K = 1024) beside
# torch.func.vmap(grad) of the same transformers model (gradients alone, no projection),
# for all-MiniLM-L6-v2's config and XLM-R-, ELECTRA-, ALBERT-, DeBERTa-v3- and
# ModernBERT-base-sized ones (hidden 768; 12 layers, ModernBERT's 22; ALBERT's shared and
# with 128-wide embeddings; DeBERTa's relative attention over 256 buckets), 64 tokens per
# text. Run it on an otherwise idle machine.
#   scripts/bench-hf.sh [threads] [config.json ...]   (configs: all six by default)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
bin=${TANGENT_BIN:-.build/release/tangent}
[ -n "${TANGENT_BIN:-}" ] || swift build -c release --product tangent >&2
minilm=$(scripts/minilm.sh)
grep -m1 -o 'avx512[a-z]*' /proc/cpuinfo >/dev/null && echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) (AVX-512)" \
  || echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) (AVX2, no AVX-512)"
specs=("$minilm/config.json 256 32 64 8")
for c in scripts/bench/xlmr-base-sized.json scripts/bench/electra-base-sized.json scripts/bench/albert-base-sized.json \
  scripts/bench/deberta-v3-base-sized.json scripts/bench/modernbert-base-sized.json; do specs+=("$c 64 8 16 4"); done
if [ $# -gt 1 ]; then
  specs=()
  for c in "${@:2}"; do specs+=("$c 64 8 16 4"); done
fi
for spec in "${specs[@]}"; do
  read -r config texts block torch_texts chunk <<<"$spec"
  echo "== $config"
  out=$($bin bench featurize --model-config "$config" --tokens 64 --texts "$texts" --batch-size "$block" --threads "$threads" --no-dense-reference)
  echo "$out"
  ref=$(python3 scripts/bench_torch_featurize.py "$config" --tokens 64 --texts "$torch_texts" --chunk "$chunk" --threads "$threads")
  echo "$ref"
  ours=$(echo "$out" | sed -n 's/.*end to end: [0-9.]* s, \([0-9.]*\) examples\/s.*/\1/p')
  theirs=$(echo "$ref" | sed -n 's/.*vmap(grad): [0-9.]* s, \([0-9.]*\) examples\/s.*/\1/p')
  python3 -c "print(f'ratio: tangent end to end / PyTorch gradients alone = {$ours / $theirs:.2f}x')"
done
