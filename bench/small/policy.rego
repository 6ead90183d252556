# A small bundle for bench/pdp-vs-opa.sh: a few rules, one of which reads
# the arguments, which change in every request. Evaluation is cheap here,
# so the figure is the decision's fixed cost.
package warden.authz

allow if {
	input.action == "tools/call"
	input.agent.roles[_] == "trader"
	startswith(input.resource.id, "market-data/")
	count(input.args.symbol) <= 16
}

deny contains "symbol_too_long" if count(input.args.symbol) > 16

deny contains "outside_the_office" if not input.context.source.region
