#!/usr/bin/env bash
# Memory of `warden serve` while its audit log grows: distinct decisions
# through POST /v1/decide of a real server (every decision durably in the
# audit log, audit.mode sync) for several minutes, with the server's
# resident memory (VmRSS) and the log's size sampled as it runs.
#
# What is printed: one line per sample (seconds, entries in the log, RSS in
# MB), then the RSS after warm-up and at the end, and the growth per
# decision over that span (the slope of a least-squares line through the
# samples after warm-up). A log whose memory does not depend on its length
# shows a slope near zero; a per-entry index in memory shows as bytes per
# decision. The log is verified at the end.
#
# DPoP is off for the benchmark's trust domain, as in bench/pdp-vs-opa.sh.
# An access token lives at most 15 minutes, so DUR stays below 14m.
#
# Usage: bench/auditsoak.sh
#   DUR=5m        how long to drive load (after 2 s of unmeasured warm-up)
#   CONC=32       concurrent connections
#   EVERY=10      seconds between samples
#   WARMUP=60     seconds after which growth is measured
#   STORE=...     a postgres:// DSN to run the server on PostgreSQL (default: the embedded store)
#   WARDEN=...    a warden binary to measure (default: built from this tree)
#   OUT=FILE      also write the samples as CSV (seconds,entries,rss_bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5m}
CONC=${CONC:-32}
EVERY=${EVERY:-10}
WARMUP=${WARMUP:-60}
STORE=${STORE:-}
ADDR=127.0.0.1:7272
BUNDLE=policies/finance

. bench/lib.sh

echo "building warden and the load generator..." >&2
if [ -n "${WARDEN:-}" ]; then
	cp "$WARDEN" "$work/warden"
else
	go build -o "$work/warden" ./cmd/warden
fi
go build -o "$work/loadgen" ./bench/loadgen

cat >"$work/warden.yaml" <<EOF
identity:
  trust_domains:
    prod: {description: production agents}
decide:
  regions:
    eu-west: [10.1.0.0/16]
log:
  level: warn
EOF
store=()
if [ -n "$STORE" ]; then store=(--store "$STORE"); fi
"$work/warden" serve --config "$work/warden.yaml" --data "$work/data" --addr "$ADDR" --policies "$BUNDLE" "${store[@]}" 2>"$work/warden.log" &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do
	curl -fsS -o /dev/null "http://$ADDR/readyz" 2>/dev/null && break
	sleep 0.1
done
curl -fsS -o /dev/null "http://$ADDR/readyz" || { cat "$work/warden.log" >&2; exit 1; }
w() { "$work/warden" --server "http://$ADDR" --data "$work/data" "$@"; }
agent=ai-agent://prod/finance/trading-optimizer
w agent keygen --out "$work/agent.jwk" >/dev/null
w agent register "$agent" --role trader --owner team-quant --pubkey "$work/agent.pub.jwk" >/dev/null
w pep register soak --out "$work/pep.cred" >/dev/null
token=$(w token --agent "$agent" --key "$work/agent.jwk" --expires-in 15m)
# args.symbol differs in every request: every decision, and every entry, is distinct.
cat >"$work/decide.json" <<EOF
{"token": "$token", "action": "tools/call",
 "resource": {"kind": "mcp.tool", "id": "market-data/get_quote"},
 "args": {"symbol": "SYM-{{n}}"},
 "context": {"source": {"ip": "10.1.2.3"}, "session": {"id": "s-1"}}}
EOF
umask 077
printf 'Bearer ' >"$work/pep.auth"
cat "$work/pep.cred" >>"$work/pep.auth"

rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$server/status"; }
entries() { # the size of the latest checkpoint: the second line of the signed note (0 before the first)
	local n
	n=$(curl -fsS "http://$ADDR/v1/audit/checkpoint" 2>/dev/null | sed -n 2p)
	echo "${n:-0}"
}

echo "load: $CONC connections for $DUR; sampling every ${EVERY}s" >&2
"$work/loadgen" -name soak -url "http://$ADDR/v1/decide" -body "$work/decide.json" \
	-H "Authorization: @$work/pep.auth" -c "$CONC" -d "$DUR" -expect '"decision_id"' -distinct >"$work/load.result" &
load=$!
pids+=("$load")
start=$(date +%s)
: >"$work/samples.csv"
while kill -0 "$load" 2>/dev/null; do
	now=$(($(date +%s) - start))
	echo "$now,$(entries),$(rss)" | tee -a "$work/samples.csv" >&2
	for _ in $(seq 1 "$EVERY"); do
		kill -0 "$load" 2>/dev/null || break
		sleep 1
	done
done
wait "$load" || { echo "the load generator reported errors" >&2; exit 1; }
sleep 2 # the last checkpoint
now=$(($(date +%s) - start))
echo "$now,$(entries),$(rss)" | tee -a "$work/samples.csv" >&2
if [ -n "${OUT:-}" ]; then cp "$work/samples.csv" "$OUT"; fi
# The embedded log is verified from its directory (a snapshot beside the
# running server); PostgreSQL's through the server's export.
where=()
if [ -z "$STORE" ]; then
	w audit key >"$work/checkpoint.pub"
	where=(--dir "$work/data/audit" --key "$work/checkpoint.pub")
fi
report=$(w audit verify "${where[@]}" --format json 2>&1) || true
verified=$(echo "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["entries"], "entries, log verifies:", r["ok"], r.get("problem") or "")' 2>/dev/null) ||
	verified="verification failed: $report"

python3 - "$work/samples.csv" "$work/load.result" "$WARMUP" "$verified" "${STORE:+postgres}" <<'EOF'
import json, sys
samples, result, warmup, verified, backend = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5] or "embedded"
rows = [tuple(float(x) for x in line.split(",")) for line in open(samples) if line.strip()]
load = json.load(open(result))
print(f"backend {backend}; {load['concurrency']} connections, {load['seconds']:.0f}s: "
      f"{load['per_second']:.0f} decisions/s, p50 {load['p50_us']:.0f} µs, p99 {load['p99_us']:.0f} µs")
print(f"audit log: {verified}")
print(f"{'seconds':>8} {'entries':>10} {'RSS MB':>8}")
for t, n, r in rows:
    print(f"{t:8.0f} {n:10.0f} {r / 1e6:8.1f}")
after = [(n, r) for t, n, r in rows if t >= warmup]
if len(after) < 3:
    sys.exit("too few samples after warm-up to measure growth; run longer")
mn = sum(n for n, _ in after) / len(after)
mr = sum(r for _, r in after) / len(after)
slope = sum((n - mn) * (r - mr) for n, r in after) / sum((n - mn) ** 2 for n, _ in after)
(n0, r0), (n1, r1) = after[0], after[-1]
print(f"after warm-up ({warmup:.0f} s): RSS {r0 / 1e6:.1f} MB at {n0:.0f} entries, "
      f"{r1 / 1e6:.1f} MB at {n1:.0f} entries, peak {max(r for _, r in after) / 1e6:.1f} MB")
print(f"growth: {slope:.1f} bytes per decision (least squares over {len(after)} samples); "
      f"end to end {(r1 - r0) / max(n1 - n0, 1):.1f}")
EOF
