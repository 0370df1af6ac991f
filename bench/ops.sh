#!/bin/bash
# make bench (operations): what metrics and live reload cost.
#  1. The HTTP proxy with EGRESS_ROUTER_METRICS_ADDRESS on (scraped every
#     second, as Prometheus would) and off: keep-alive req/s and new
#     connections/s (wrk, "Connection: close"), median of interleaved rounds.
#  2. Reload of a 1000-line destination list, as the daemon logs it ("ms" of
#     "configuration reloaded": validate + apply), redirect (one nft
#     transaction), the HTTP proxy (policy compiled and swapped) and the DNS
#     proxy (1000 ports: on the kernel path, one nft transaction; in user
#     space, 1000 listeners retargeted), median of 10 SIGHUPs.
# Namespaces of our own (prefix erbo); proxies on CPU 1, wrk and backend on CPU 0.
# Every load is bounded (fixed durations and counts).
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-50}
P=erbo-$$
NC=$P-c NP=$P-p NS=$P-s NR=$P-r
T=$(mktemp -d /tmp/erbo.XXXXXX)
PIDS=()
OUT=bench/out/ops.txt
mkdir -p bench/out
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for n in "$NC" "$NP" "$NS" "$NR"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
nsx() { local n=$1; shift; ip netns exec "$n" "$@"; }
bg() { local n=$1; shift; ip netns exec "$n" "$@" & PIDS+=($!); disown $!; }

for n in "$NC" "$NP" "$NS" "$NR"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n "$NC" link add c0 type veth peer name p0 netns "$NP"
ip -n "$NP" link add p1 type veth peer name s0 netns "$NS"
ip -n "$NC" addr add 10.99.0.1/24 dev c0
ip -n "$NP" addr add 10.99.0.2/24 dev p0
ip -n "$NP" addr add 10.99.1.2/24 dev p1
ip -n "$NS" addr add 10.99.1.1/24 dev s0
for l in "$NC c0" "$NP p0" "$NP p1" "$NS s0"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$NS" route add default via 10.99.1.2
# New connections/s runs tens of thousands of connections: without reuse the
# client's ports run out in TIME_WAIT after a few rounds (whichever proxy is
# measured then looks 5x slower). Our namespaces only.
for n in "$NC" "$NP"; do nsx "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"; done
ulimit -n 20000

cat >"$T/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout client 60s
    timeout server 60s
    timeout connect 5s
frontend bench
    bind 10.99.1.1:8000
    http-request return status 200 content-type text/plain string "hello from the bench backend"
CFG
bg "$NS" taskset -c 0 haproxy -db -f "$T/haproxy.cfg"
EGRESS_HTTP_PROXY_DESTINATION=10.99.1.0/24 bg "$NP" taskset -c 1 node bin/egress-router http-proxy --listen 10.99.0.2 --port 8080 --max-connections 16384 >/dev/null
EGRESS_HTTP_PROXY_DESTINATION=10.99.1.0/24 EGRESS_ROUTER_METRICS_ADDRESS=127.0.0.1:9464 bg "$NP" taskset -c 1 node bin/egress-router http-proxy --listen 10.99.0.2 --port 8081 --max-connections 16384 >/dev/null
# The scraper: one GET of /metrics a second, bounded by the run's length.
bg "$NP" taskset -c 0 sh -c 'for i in $(seq 600); do curl -s -o /dev/null http://127.0.0.1:9464/metrics; sleep 1; done'
for port in 8080 8081; do
    for _ in $(seq 100); do nsx "$NC" curl -s -o /dev/null -m 1 -x "http://10.99.0.2:$port" http://10.99.1.1:8000/ && break; sleep 0.1; done
done
cat >"$T/ka.lua" <<'LUA'
wrk.path = "http://10.99.1.1:8000/"
wrk.headers["Host"] = "10.99.1.1:8000"
LUA
cat >"$T/close.lua" <<'LUA'
wrk.path = "http://10.99.1.1:8000/"
wrk.headers["Host"] = "10.99.1.1:8000"
wrk.headers["Connection"] = "close"
LUA
rps() { # port lua conns
    nsx "$NC" taskset -c 0 wrk -t1 -c"$3" -d"${DUR}s" -s "$2" "http://10.99.0.2:$1/" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
rps 8080 "$T/ka.lua" "$CONNS" >/dev/null; rps 8081 "$T/ka.lua" "$CONNS" >/dev/null # warm-up
: >"$T/r"
# Off and on alternate which goes first, so a drift of the shared VM does not favour one.
for r in $(seq "$ROUNDS"); do
    order="8080:off 8081:on"; (( r % 2 )) || order="8081:on 8080:off"
    for po in $order; do echo "${po#*:}-ka $(rps "${po%:*}" "$T/ka.lua" "$CONNS")" >>"$T/r"; done
    for po in $order; do echo "${po#*:}-new $(rps "${po%:*}" "$T/close.lua" 10)" >>"$T/r"; done
done
m() { awk -v w="$1" '$1==w {print $2}' "$T/r" | median; }
OFF_KA=$(m off-ka) ON_KA=$(m on-ka) OFF_NEW=$(m off-new) ON_NEW=$(m on-new)

# --- reload of 1000 lines: the daemon in a namespace of its own (a veth eth0, macvlan0 on it)
ip -n "$NR" link add eth0 type veth peer name eth1
ip -n "$NR" link add macvlan0 link eth0 type macvlan mode bridge
ip -n "$NR" link set eth0 up; ip -n "$NR" link set eth1 up
reload_ms() { # mode var file-a file-b
    local mode=$1 var=$2 a=$3 b=$4 log=$T/$1.log
    cp "$a" "$T/live"
    env EGRESS_SOURCE=192.168.12.99/24 EGRESS_GATEWAY=192.168.12.1 EGRESS_ROUTER_MODE="$mode" "$var=$T/live" \
        EGRESS_HTTP_PROXY_LISTEN=127.0.0.1 ip netns exec "$NR" node bin/egress-router daemon >"$log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do grep -q '"msg":"ready"' "$log" && break; sleep 0.1; done
    for i in $(seq 10); do
        if (( i % 2 )); then cp "$b" "$T/live"; else cp "$a" "$T/live"; fi
        kill -HUP "$pid"
        for _ in $(seq 50); do (( $(grep -c '"configuration reloaded"' "$log") >= i )) && break; sleep 0.1; done
    done
    kill -TERM "$pid"; wait "$pid" || true
    grep '"configuration reloaded"' "$log" | sed 's/.*"ms":\([0-9.]*\).*/\1/' | median
}
for i in $(seq 0 999); do echo "$((10000 + i)) tcp 203.0.113.$((i % 250 + 1)) $((80 + i % 3))"; done >"$T/redir-a"
for i in $(seq 0 999); do echo "$((10000 + i)) tcp 203.0.113.$(((i + 7) % 250 + 1)) 80"; done >"$T/redir-b"
for i in $(seq 0 999); do echo "host$i.example.com"; done >"$T/http-a"
for i in $(seq 0 999); do echo "10.$((i / 250)).$((i % 250)).0/24"; done >"$T/http-b"
REDIR_MS=$(reload_ms legacy EGRESS_DESTINATION_FILE "$T/redir-a" "$T/redir-b")
HTTP_MS=$(reload_ms http-proxy EGRESS_HTTP_PROXY_DESTINATION_FILE "$T/http-a" "$T/http-b")
for i in $(seq 0 999); do echo "$((20000 + i)) 203.0.113.$((i % 250 + 1)) $((80 + i % 3))"; done >"$T/dns-a"
for i in $(seq 0 999); do echo "$((20000 + i)) 203.0.113.$(((i + 7) % 250 + 1)) 443"; done >"$T/dns-b"
DNSK_MS=$(EGRESS_DNS_PROXY_MODE=kernel reload_ms dns-proxy EGRESS_DNS_PROXY_DESTINATION_FILE "$T/dns-a" "$T/dns-b")
DNSU_MS=$(EGRESS_DNS_PROXY_MODE=userspace reload_ms dns-proxy EGRESS_DNS_PROXY_DESTINATION_FILE "$T/dns-a" "$T/dns-b")

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%+.1f%%", (a-b)/b*100 }'; }
{
    echo "operations benchmark ($(date -u +%FT%TZ)); wrk -t1 ${DUR}s, median of $ROUNDS interleaved rounds; shared 2-core VM: figures are noisy"
    echo "layout: proxies pinned to CPU 1; wrk, haproxy backend and the 1/s /metrics scraper on CPU 0"
    printf '%-36s %12s %12s %8s\n' "" "metrics off" "metrics on" "on/off"
    printf '%-36s %12s %12s %8s\n' "keep-alive req/s (c=$CONNS)" "$OFF_KA" "$ON_KA" "$(pct "$ON_KA" "$OFF_KA")"
    printf '%-36s %12s %12s %8s\n' "new connections/s (c=10, close)" "$OFF_NEW" "$ON_NEW" "$(pct "$ON_NEW" "$OFF_NEW")"
    echo "reload of a 1000-line list (validate + apply, median of 10 SIGHUPs):"
    printf '  %-34s %8s ms\n' "redirect (1000 mappings, one nft transaction)" "$REDIR_MS"
    printf '  %-34s %8s ms\n' "http-proxy (1000 rules, policy swap)" "$HTTP_MS"
    printf '  %-34s %8s ms\n' "dns-proxy kernel path (1000 ports, one nft transaction)" "$DNSK_MS"
    printf '  %-34s %8s ms\n' "dns-proxy user space (1000 listeners retargeted)" "$DNSU_MS"
} | tee "$OUT"
