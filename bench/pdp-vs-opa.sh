#!/usr/bin/env bash
# Warden's decision API against OPA's data API, side by side on this
# machine: the same bundle (policies/finance by default), the same policy
# input, the same load generator (bench/loadgen), one server at a time.
#
#   OPA:    opa run --server (built from the OPA module in go.mod), POST
#           /v1/data/system/warden/decision with {"input": ...}: the query
#           Warden's engine asks (bench/opa/decision.rego), on the input
#           Warden built for the same request.
#   Warden: warden serve, POST /v1/decide with a real access token, as a
#           registered enforcement point, every decision durably recorded
#           in the audit log (audit.mode sync) before it is answered.
#
# DPoP is switched off for the benchmark's trust domain: a proof is good
# for one request only, so a load generator cannot repeat it.
#
# Two bundles, one after the other: policies/finance (many rules; Warden's
# rule cache saves most of its evaluation) and bench/small (a few rules,
# one reading the arguments, which change in every request: evaluation is
# cheap, and the decision's fixed cost decides the figure).
#
# Usage: bench/pdp-vs-opa.sh            (BUNDLES, CONC, DUR to change the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLES=${BUNDLES:-${BUNDLE:-policies/finance bench/small}}
CONC=${CONC:-16}
DUR=${DUR:-15s}
WARDEN_ADDR=127.0.0.1:7171
OPA_ADDR=127.0.0.1:8181

. bench/lib.sh

echo "building warden, opa and the load generator..." >&2
go build -o "$work/warden" ./cmd/warden
go build -o "$work/opa" github.com/open-policy-agent/opa
go build -o "$work/loadgen" ./bench/loadgen

wait_url() { # url
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "not up: $1" >&2
	return 1
}

run_bundle() { # bundle directory
BUNDLE=$1
dir="$work/$(basename "$BUNDLE")"
mkdir -p "$dir"
mine=()
# Warden, on its own data directory.
cat >"$dir/warden.yaml" <<EOF
identity:
  trust_domains:
    prod: {description: production agents}
decide:
  regions:
    eu-west: [10.1.0.0/16]
log:
  level: warn
EOF
"$work/warden" serve --config "$dir/warden.yaml" --data "$dir/data" --addr "$WARDEN_ADDR" --policies "$BUNDLE" 2>"$dir/warden.log" &
pids+=($!)
mine+=($!)
wait_url "http://$WARDEN_ADDR/readyz"
w() { "$work/warden" --server "http://$WARDEN_ADDR" --data "$dir/data" "$@"; }
agent=ai-agent://prod/finance/trading-optimizer
w agent keygen --out "$dir/agent.jwk" >/dev/null
w agent register "$agent" --role trader --owner team-quant --pubkey "$dir/agent.pub.jwk" >/dev/null
w pep register bench --audience warden --trust all --out "$dir/pep.cred" >/dev/null
token=$(w token --agent "$agent" --key "$dir/agent.jwk" --expires-in 15m)
cat >"$dir/decide.json" <<EOF
{"token": "$token", "action": "tools/call",
 "resource": {"kind": "mcp.tool", "id": "market-data/get_quote"},
 "args": {"symbol": "ACME"},
 "context": {"source": {"ip": "10.1.2.3"}, "session": {"id": "s-1"}}}
EOF
umask 077
printf 'Bearer ' >"$dir/pep.auth"
cat "$dir/pep.cred" >>"$dir/pep.auth"

# One decision, to take the input Warden built from the audit log.
curl -fsS -H "Authorization: $(cat "$dir/pep.auth")" -H 'Content-Type: application/json' \
	--data @"$dir/decide.json" "http://$WARDEN_ADDR/v1/decide" >"$dir/first.json"
outcome=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"])' "$dir/first.json")
w audit tail -n 50 --format json |
	python3 -c 'import json,sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("kind") == "decision": last = e
print(json.dumps({"input": last["input"]}))' >"$dir/opa-input.json"

# OPA, on the same bundle (links resolved, decision cases left out) and the engine's query.
mkdir -p "$dir/opa-bundle"
cp -L "$BUNDLE"/*.rego "$dir/opa-bundle/"
cp -L "$BUNDLE"/data.* "$dir/opa-bundle/" 2>/dev/null || true
cp bench/opa/decision.rego "$dir/opa-bundle/"
"$work/opa" run --server --addr "$OPA_ADDR" --log-level error --skip-version-check "$dir/opa-bundle" >"$dir/opa.log" 2>&1 &
pids+=($!)
mine+=($!)
wait_url "http://$OPA_ADDR/health"
opa_answer=$(curl -fsS -H 'Content-Type: application/json' --data @"$dir/opa-input.json" "http://$OPA_ADDR/v1/data/system/warden/decision")
echo "same request: Warden says $outcome; OPA says $opa_answer" >&2

# Two workloads. "repeated": the same request every time, as above.
# "distinct": args.symbol differs in every request (SYM-1, SYM-2, ...), in
# Warden's requests and OPA's inputs alike, so no two inputs are the same
# and Warden cannot reuse a result it computed for an identical input in
# the same second.
sed 's/"ACME"/"SYM-{{n}}"/' "$dir/decide.json" >"$dir/decide-distinct.json"
sed 's/"ACME"/"SYM-{{n}}"/' "$dir/opa-input.json" >"$dir/opa-input-distinct.json"

echo "load: $CONC connections, $DUR each, after 2s of warm-up" >&2
for mode in repeated distinct; do
	suffix=""
	flags=()
	if [ "$mode" = distinct ]; then suffix=-distinct; flags=(-distinct); fi
	"$work/loadgen" -name opa -url "http://$OPA_ADDR/v1/data/system/warden/decision" -body "$dir/opa-input$suffix.json" \
		-c "$CONC" -d "$DUR" -expect '"result"' "${flags[@]}" >"$dir/opa-$mode.result"
	"$work/loadgen" -name warden -url "http://$WARDEN_ADDR/v1/decide" -body "$dir/decide$suffix.json" \
		-H "Authorization: @$dir/pep.auth" -c "$CONC" -d "$DUR" -expect '"decision_id"' "${flags[@]}" >"$dir/warden-$mode.result"
done
entries=$(w audit verify --format json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["entries"], "entries, log verifies:", r["ok"])')

python3 - "$dir" "$BUNDLE" "$entries" <<'EOF2'
import json, sys
work, bundle, entries = sys.argv[1:4]
print(f"bundle {bundle}; Warden's audit log: {entries}")
for mode in ("repeated", "distinct"):
    o = json.load(open(f"{work}/opa-{mode}.result")); w = json.load(open(f"{work}/warden-{mode}.result"))
    print(f"\n{mode} inputs, {o['concurrency']} connections, {o['seconds']:.0f}s each")
    print(f"{'':8} {'decisions/s':>12} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'errors':>7}")
    for r in (o, w):
        print(f"{r['name']:8} {r['per_second']:12.0f} {r['p50_us']:8.0f} {r['p90_us']:8.0f} {r['p99_us']:8.0f} {r['errors']:7d}")
    print(f"warden/opa throughput: {w['per_second'] / o['per_second']:.2f}x; p99 {w['p99_us']:.0f} µs vs {o['p99_us']:.0f} µs")
EOF2

for p in "${mine[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${mine[@]}" 2>/dev/null || true
}

for b in $BUNDLES; do
	run_bundle "$b"
done
