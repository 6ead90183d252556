#!/usr/bin/env bash
# A soak of the MCP gateway: warden serve --gateway in front of the
# benchmark upstream, its capacity measured first (bench/mcpload, CONC
# sessions of one agent, 10 s), then DUR (default 1h) at half of it through
# bench/soak: agents registered and disabled as it runs, MCP sessions
# opened and closed (a quarter of them sessionless), tokens of TOKEN_LIFE
# (default 1m) expiring and renewed, a DPoP proof on every request and
# every decision durably in the audit log. Every call must succeed.
# Meanwhile the server's resident memory and open file descriptors are
# sampled every 10 s.
#
# Usage: bench/soak.sh [OUT_DIR]   (DUR, CONC, TOKEN_LIFE, RATE change the defaults;
#                                   RATE skips the capacity run)
# OUT_DIR gets soak.jsonl (the load's intervals), resources.csv (time,
# RSS, FDs), rss.svg (RSS over time) and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-1h}
CONC=${CONC:-16}
TOKEN_LIFE=${TOKEN_LIFE:-1m}
WARDEN_ADDR=127.0.0.1:7181
GATEWAY_ADDR=127.0.0.1:7411
UPSTREAM_ADDR=127.0.0.1:7412
out=${1:-$(mktemp -d)}
mkdir -p "$out"

. bench/lib.sh

echo "building warden and the load generators..." >&2
go build -o "$work/warden" ./cmd/warden
go build -o "$work/mcpload" ./bench/mcpload
go build -o "$work/soak" ./bench/soak

"$work/mcpload" -serve "$UPSTREAM_ADDR" 2>"$work/upstream.log" &
pids+=($!)
# The gateway's defaults and limits, but for the per-agent rate limit,
# raised (still checked on every call) so that the capacity run's one agent
# measures the gateway and not its own limit of 1,000 calls/s.
cat >"$work/gateway.yaml" <<EOF2
listen: $GATEWAY_ADDR
servers:
  - {name: bench, url: "http://$UPSTREAM_ADDR/mcp", trust: trusted}
rate_limit: {rate: 100000, burst: 200000}
EOF2
cat >"$work/warden.yaml" <<EOF2
identity:
  trust_domains:
    prod: {description: production agents, require_dpop: true}
log:
  level: warn
EOF2
"$work/warden" serve --config "$work/warden.yaml" --data "$work/data" --addr "$WARDEN_ADDR" \
	--policies bench/gateway --gateway "$work/gateway.yaml" 2>"$out/warden.log" &
server=$!
pids+=($server)
wait_up "$WARDEN_ADDR"
wait_up "$GATEWAY_ADDR"
wait_up "$UPSTREAM_ADDR"
w() { "$work/warden" --server "http://$WARDEN_ADDR" --data "$work/data" "$@"; }

if [ -z "${RATE:-}" ]; then
	agent=ai-agent://prod/bench/capacity
	w agent keygen --out "$work/agent.jwk" >/dev/null
	w agent register "$agent" --role bench --owner team-bench --pubkey "$work/agent.pub.jwk" >/dev/null
	"$work/mcpload" -name capacity -url "http://$GATEWAY_ADDR/mcp" -tool bench__echo -c "$CONC" -d 10s \
		-warden "http://$WARDEN_ADDR" -agent "$agent" -key "$work/agent.jwk" >"$out/capacity.json"
	RATE=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["per_second"] / 2))' "$out/capacity.json")
	echo "capacity: $(cat "$out/capacity.json"); soaking at $RATE calls/s" >&2
fi

sample() {
	echo "seconds,rss_kb,fds" >"$out/resources.csv"
	local t0=$SECONDS
	while kill -0 "$server" 2>/dev/null; do
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
		fds=$(ls "/proc/$server/fd" 2>/dev/null | wc -l)
		echo "$((SECONDS - t0)),$rss,$fds" >>"$out/resources.csv"
		sleep 10
	done
}
sample &
sampler=$!
pids+=($sampler)

status=0
"$work/soak" -warden "http://$WARDEN_ADDR" -gateway "http://$GATEWAY_ADDR/mcp" \
	-admin-token-file "$work/data/admin.token" -rate "$RATE" -workers "$CONC" -d "$DUR" -token-life "$TOKEN_LIFE" \
	>"$out/soak.jsonl" 2>"$out/soak.err" || status=$?
kill "$sampler" 2>/dev/null || true # the verification below is not the load's
cat "$out/soak.err" >&2
entries=$(w audit verify --format json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["entries"], "entries, log verifies:", r["ok"])')

python3 - "$out" "$RATE" "$entries" <<'PY' | tee "$out/summary.txt"
import csv, json, sys
out, rate, entries = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [(int(r["seconds"]), int(r["rss_kb"]), int(r["fds"])) for r in csv.DictReader(open(out + "/resources.csv"))]
ivs = [json.loads(l) for l in open(out + "/soak.jsonl")]
calls = sum(i["calls"] for i in ivs)
errors = sum(i["errors"] for i in ivs)
warm = [r for r in rows if r[0] >= 300] or rows  # after five minutes of warm-up
print(f"rate {rate}/s: {calls} calls, {errors} errors, {ivs[-1]['sessions_opened'] if ivs else 0} sessions, "
      f"{ivs[-1]['agents_registered'] if ivs else 0} agents; {entries}")
print(f"RSS after warm-up: first {warm[0][1]//1024} MB, min {min(r[1] for r in warm)//1024} MB, "
      f"max {max(r[1] for r in warm)//1024} MB, last {warm[-1][1]//1024} MB")
print(f"file descriptors after warm-up: first {warm[0][2]}, min {min(r[2] for r in warm)}, max {max(r[2] for r in warm)}, last {warm[-1][2]}")
p50 = sorted(i["p50_us"] for i in ivs if i["calls"])
p99 = sorted(i["p99_us"] for i in ivs if i["calls"])
if p50:
    print(f"latency per interval: p50 median {p50[len(p50)//2]:.0f} us, p99 median {p99[len(p99)//2]:.0f} us, p99 worst {p99[-1]:.0f} us")
# RSS over time as an SVG, no dependencies.
W, H, pad = 720, 280, 48
tmax = max(r[0] for r in rows) or 1
mmax = max(r[1] for r in rows) / 1024 * 1.1 or 1
pts = " ".join(f"{pad + r[0] / tmax * (W - 2 * pad):.1f},{H - pad - r[1] / 1024 / mmax * (H - 2 * pad):.1f}" for r in rows)
ticks = "".join(f'<text x="{pad - 6}" y="{H - pad - f * (H - 2 * pad) + 4:.0f}" text-anchor="end">{mmax * f:.0f}</text>' for f in (0, 0.25, 0.5, 0.75, 1))
tticks = "".join(f'<text x="{pad + f * (W - 2 * pad):.0f}" y="{H - pad + 16}" text-anchor="middle">{tmax * f / 60:.0f}</text>' for f in (0, 0.25, 0.5, 0.75, 1))
svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">warden serve --gateway: resident memory (MB) over time (minutes), {rate} calls/s</text>
<line x1="{pad}" y1="{H - pad}" x2="{W - pad}" y2="{H - pad}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{H - pad}" stroke="black"/>
{ticks}{tticks}
<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{pts}"/>
</svg>
'''
open(out + "/rss.svg", "w").write(svg)
PY
exit $status
