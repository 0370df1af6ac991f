#!/bin/bash
# make bench: each engine side by side with its reference (squid, haproxy, dnsmasq) and
# a direct connection, in namespaces of its own, in one run. Bounded loads only.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
status=0
for b in http-proxy dns-proxy churn fastpath-micro firewall dns-view ops; do
    for f in "bench/$b.sh" "bench/$b.mjs" "build/bench/$b.js"; do
        [[ -f $f ]] || continue
        echo "=== $b ($f)"
        case $f in
            *.sh) bash "$f" || status=1 ;;
            *.js | *.mjs) node "$f" || status=1 ;;
        esac
        break
    done
done
exit $status
