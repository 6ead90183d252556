#!/usr/bin/env bash
# The MCP gateway's overhead: the same tools/call load, from the same load
# generator (bench/mcpload, the official Go SDK client), straight to an
# upstream MCP server and through the gateway, one after the other.
#
#   direct:  mcpload -> upstream (Streamable HTTP, no authentication)
#   proxy:   mcpload -> Caddy (a bare reverse_proxy, no authentication) ->
#            upstream: what one proxy hop costs by itself on this machine
#   gateway: mcpload -> warden serve --gateway -> upstream; every request
#            carries an access token and a fresh DPoP proof (trust domain
#            prod requires them), the gateway verifies both, decides the
#            call against the policy (bench/gateway) and records the
#            decision durably in the audit log (audit.mode sync) before it
#            forwards the call.
#
# Both paths speak the same protocol version, PROTOCOL (default 2025-11-25,
# the newest the upstream's stateful server speaks; the gateway serves
# 2026-07-28 too, statelessly).
#
# Usage: bench/gateway-overhead.sh      (CONC, DUR, PROTOCOL and CADDY_VERSION
#        change the defaults; NO_PROXY=1 leaves the Caddy row out)
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=${CONC:-16}
DUR=${DUR:-10s}
PROTOCOL=${PROTOCOL:-2025-11-25}
WARDEN_ADDR=127.0.0.1:7171
GATEWAY_ADDR=127.0.0.1:7401
UPSTREAM_ADDR=127.0.0.1:7402
CADDY_ADDR=127.0.0.1:7403
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}

. bench/lib.sh

echo "building warden and the load generator..." >&2
go build -o "$work/warden" ./cmd/warden
go build -o "$work/mcpload" ./bench/mcpload
if [ -z "${NO_PROXY:-}" ]; then
	echo "building caddy $CADDY_VERSION (a few minutes the first time)..." >&2
	GOBIN="$work" go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION"
fi

"$work/mcpload" -serve "$UPSTREAM_ADDR" 2>"$work/upstream.log" &
pids+=($!)
# One agent drives the gateway to its whole throughput here: its rate limit
# (1,000 calls/s by default) is off, the gateway's other limits are the
# defaults.
cat >"$work/gateway.yaml" <<EOF2
listen: $GATEWAY_ADDR
rate_limit: {rate: 0}
servers:
  - {name: bench, url: "http://$UPSTREAM_ADDR/mcp", trust: trusted}
EOF2
cat >"$work/warden.yaml" <<EOF2
identity:
  trust_domains:
    prod: {description: production agents, require_dpop: true}
log:
  level: warn
EOF2
"$work/warden" serve --config "$work/warden.yaml" --data "$work/data" --addr "$WARDEN_ADDR" \
	--policies bench/gateway --gateway "$work/gateway.yaml" 2>"$work/warden.log" &
pids+=($!)
wait_up "$WARDEN_ADDR"
wait_up "$GATEWAY_ADDR"
wait_up "$UPSTREAM_ADDR"
if [ -z "${NO_PROXY:-}" ]; then
	cat >"$work/Caddyfile" <<EOF2
{
	admin off
	auto_https off
}
http://$CADDY_ADDR {
	reverse_proxy $UPSTREAM_ADDR
}
EOF2
	"$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile 2>"$work/caddy.log" &
	pids+=($!)
	wait_up "$CADDY_ADDR"
fi
w() { "$work/warden" --server "http://$WARDEN_ADDR" --data "$work/data" "$@"; }
agent=ai-agent://prod/bench/agent
w agent keygen --out "$work/agent.jwk" >/dev/null
w agent register "$agent" --role bench --owner team-bench --pubkey "$work/agent.pub.jwk" >/dev/null

echo "load: $CONC MCP sessions, protocol $PROTOCOL, $DUR each, after 2s of warm-up" >&2
"$work/mcpload" -name direct -url "http://$UPSTREAM_ADDR/mcp" -tool echo -c "$CONC" -d "$DUR" -protocol "$PROTOCOL" >"$work/direct.result"
if [ -z "${NO_PROXY:-}" ]; then
	"$work/mcpload" -name proxy -url "http://$CADDY_ADDR/mcp" -tool echo -c "$CONC" -d "$DUR" -protocol "$PROTOCOL" >"$work/proxy.result"
fi
"$work/mcpload" -name gateway -url "http://$GATEWAY_ADDR/mcp" -tool bench__echo -c "$CONC" -d "$DUR" -protocol "$PROTOCOL" \
	-warden "http://$WARDEN_ADDR" -agent "$agent" -key "$work/agent.jwk" >"$work/gateway.result"
entries=$(w audit verify --format json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["entries"], "entries, log verifies:", r["ok"])')

python3 - "$work" "$entries" <<'EOF2'
import json, os, sys
work, entries = sys.argv[1:3]
d = json.load(open(f"{work}/direct.result")); g = json.load(open(f"{work}/gateway.result"))
p = json.load(open(f"{work}/proxy.result")) if os.path.exists(f"{work}/proxy.result") else None
print(f"tools/call, {d['concurrency']} MCP sessions, {d['seconds']:.0f}s each; Warden's audit log: {entries}")
print(f"{'':8} {'calls/s':>9} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'errors':>7}")
for r in [d, p, g] if p else [d, g]:
    print(f"{r['name']:8} {r['per_second']:9.0f} {r['p50_us']:8.0f} {r['p90_us']:8.0f} {r['p99_us']:8.0f} {r['errors']:7d}")
if p:
    print(f"proxy/direct throughput: {p['per_second'] / d['per_second']:.2f}x; added p50 {p['p50_us'] - d['p50_us']:.0f} µs")
print(f"gateway/direct throughput: {g['per_second'] / d['per_second']:.2f}x; added p50 {g['p50_us'] - d['p50_us']:.0f} µs")
if p:
    print(f"gateway/proxy throughput: {g['per_second'] / p['per_second']:.2f}x; added p50 beyond the proxy's {g['p50_us'] - p['p50_us']:.0f} µs")
EOF2
