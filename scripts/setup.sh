#!/usr/bin/env bash
# Installs the system libraries the toolkit links against, when they are missing:
# OpenBLAS (libopenblas-dev) and SentencePiece (libsentencepiece-dev). Debian/Ubuntu.
set -euo pipefail
need=()
for pkg in libopenblas-dev libsentencepiece-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
command -v swift >/dev/null || { echo "error: swift is not on PATH (Swift 6 toolchain needed)" >&2; exit 1; }
