#!/bin/bash
# make bench, firewall part: see bench/firewall.mjs (namespaces erbf*, bounded runs).
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
[[ -f dist/cli/main.js ]] || npx tsc -p .
exec node bench/firewall.mjs "$@"
