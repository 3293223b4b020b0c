#!/usr/bin/env bash
# Writes an attribution page (`tangent attribute --html`) for a few trec6 questions and
# renders it in headless Chromium, once with every class and once filtered to one class
# through the page's own filter, so that both can be looked at:
#   scripts/check-attribution-page.sh [OUT_DIR]     (default /tmp/tangent-page)
# The second screenshot must show only the filtered class's explanations.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/tangent-page}
mkdir -p "$out"
scripts/setup.sh
swift build -c release --product tangent >&2
bin=.build/release/tangent
$bin attribute --model models/trec6 --train data/trec6/train.jsonl --kernel proj-pntk --proj-dim 256 --top 4 --cache "$out/cache" \
  --text "Who wrote Hamlet ?" --text "How far is the moon from the earth ?" --text "What does NASA stand for ?" \
  --text "Where is the Eiffel Tower ?" --html "$out/page.html" --overwrite > /dev/null
HEIGHT=2600 scripts/screenshot-report.sh "$out/page.html" "$out/all.png"
# The same page with the filter set to HUM before it runs (the select's first option
# that is not "all" is the first predicted class in label order).
sed 's/filter();$/document.getElementById("cls").value="HUM";filter();/' "$out/page.html" > "$out/page-hum.html"
HEIGHT=1400 scripts/screenshot-report.sh "$out/page-hum.html" "$out/hum.png"
grep -c 'class="expl"' "$out/page.html" | xargs -I{} echo "page: {} explanations; screenshots $out/all.png and $out/hum.png" >&2
