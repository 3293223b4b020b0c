#!/usr/bin/env bash
# Renders a report page in Debian's headless Chromium and saves a full-page PNG, to look at
# the report as a reader's browser shows it (installs `chromium` with apt-get if missing).
#   scripts/screenshot-report.sh reports/NAME [OUT.png]    (default OUT: NAME.png in /tmp)
set -euo pipefail
dir=${1:?usage: scripts/screenshot-report.sh REPORT_DIR [OUT.png]}
page="$dir/report.html"
[ -f "$page" ] || { echo "error: $page: no such report page (write it with tangent compare or render-report)" >&2; exit 1; }
out=${2:-/tmp/$(basename "$dir").png}
if ! command -v chromium >/dev/null; then
  echo "installing chromium" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
# The page's height: long enough for every section (the page has no scripts, so the
# layout is final when it loads); the PNG is cropped to the content afterwards by width.
height=${HEIGHT:-9000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1200,"$height" --screenshot="$out" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out (1200 x $height)" >&2
