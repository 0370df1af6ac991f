#!/bin/bash
# make bench, churn part: see bench/churn.mjs (namespaces erbc*, bounded runs).
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
[[ -f dist/cli/main.js ]] || npx tsc -p .
exec node bench/churn.mjs "$@"
