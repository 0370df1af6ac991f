#!/bin/bash
# make bench, dns-view part: see bench/dns-view.mjs (namespace erbv*, bounded runs).
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
[[ -f dist/engines/firewall/dns-view/index.js ]] || npx tsc -p .
exec node bench/dns-view.mjs "$@"
