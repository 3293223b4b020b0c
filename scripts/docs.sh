#!/usr/bin/env bash
# The library's documentation (the DocC catalog Sources/Tangent/Tangent.docc with its
# getting-started article, and every public symbol of the Tangent module) as a static
# site in docs-site/ (or the directory given); warnings (an undocumented parameter, a
# broken symbol link) fail the build.
#   scripts/docs.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs-site}
scripts/setup.sh
swift package --allow-writing-to-directory "$out" generate-documentation --target Tangent \
  --output-path "$out" --warnings-as-errors --transform-for-static-hosting
echo "documentation in $out (open $out/documentation/tangent/index.html through a web server)"
