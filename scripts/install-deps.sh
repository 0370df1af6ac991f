#!/bin/bash
# Installs what building, testing, the demo and the benchmarks need on a fresh
# Debian machine: system tools (apt) and the pinned npm packages.
# Usage: scripts/install-deps.sh [test|bench]
set -o errexit -o nounset -o pipefail

want=(nft:nftables ip:iproute2 curl:curl socat:socat conntrack:conntrack sysctl:procps nsenter:util-linux)
want+=(arping:iputils-arping)
# node-gyp builds the native addons at npm ci (native/fastpath, netlink, unix-dgram).
want+=(g++:g++ make:make python3:python3)
# Real clients of the HTTP proxy's end-to-end tests (test/e2e/http-proxy-clients.test.ts).
want+=(openssl:openssl git:git wget:wget python3:python3 pip:python3-pip)
# Operations tests: a real Prometheus scrapes /metrics, promtool lints it, units verified offline.
want+=(prometheus:prometheus promtool:prometheus systemd-analyze:systemd make:make)
# Failover lab (test/e2e/failover.test.ts): VRRP, connection-state sync, the
# systemctl stand-in's client (socat, above) and flock for the notify script.
want+=(keepalived:keepalived conntrackd:conntrackd flock:util-linux)
# The DNS view's end-to-end test resolves with dig (test/e2e/dns-view.test.ts).
want+=(dig:bind9-dnsutils)
if [[ "${1:-test}" == bench ]]; then
    want+=(haproxy:haproxy squid:squid wrk:wrk)
    # bench/churn.c: the churn benchmark's load generator.
    want+=(cc:gcc)
    # bench/firewall.mjs: bulk forwarding throughput.
    want+=(iperf3:iperf3)
    # bench/dns-view.mjs: dnsmasq as the reference forwarder and as the upstream, dnsperf as the load.
    want+=(dnsmasq:dnsmasq dnsperf:dnsperf)
fi

missing=()
for pair in "${want[@]}"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    # iputils' arping is the one the OpenShift image uses (-U -I); Habets' differs.
    if [[ $cmd == arping ]]; then
        arping -V 2>&1 | grep -q iputils || missing+=("$pkg")
    # The tests run pip as a module of the python3 on PATH.
    elif [[ $cmd == pip ]]; then
        python3 -m pip --version >/dev/null 2>&1 || missing+=("$pkg")
    elif ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) != 0 ]]; then
        echo "missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts packaged daemons on install; the benchmarks and the
    # failover lab run their own, in their namespaces.
    for svc in haproxy squid keepalived conntrackd dnsmasq; do
        [[ " ${missing[*]} " == *" $svc "* ]] && { service "$svc" stop >/dev/null 2>&1 || true; }
    done
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund
fi
