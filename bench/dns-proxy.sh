#!/bin/bash
# make bench, dns-proxy part: see bench/dns-proxy.mjs (namespaces erbd*, bounded runs).
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
[[ -f dist/cli/main.js ]] || npx tsc -p .
exec node bench/dns-proxy.mjs "$@"
