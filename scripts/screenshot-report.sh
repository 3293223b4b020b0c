#!/usr/bin/env bash
# Renders a report page, or any page tangent writes (`attribute --html`), in Debian's
# headless Chromium and saves a full-page PNG, to look at it as a reader's browser shows it
# (installs `chromium` with apt-get if missing).
#   scripts/screenshot-report.sh reports/NAME [OUT.png]    (default OUT: NAME.png in /tmp)
#   scripts/screenshot-report.sh PAGE.html [OUT.png]
set -euo pipefail
dir=${1:?usage: scripts/screenshot-report.sh REPORT_DIR|PAGE.html [OUT.png]}
if [ -f "$dir" ]; then page=$dir; else page="$dir/report.html"; fi
[ -f "$page" ] || { echo "error: $page: no such report page (write it with tangent compare or render-report)" >&2; exit 1; }
out=${2:-/tmp/$(basename "${dir%.html}").png}
if ! command -v chromium >/dev/null; then
  echo "installing chromium" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
# The page's height: long enough for every section (a report has no scripts and an
# attribution page's only script runs on load, so the layout is final when it loads).
height=${HEIGHT:-9000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1200,"$height" --screenshot="$out" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out (1200 x $height)" >&2
