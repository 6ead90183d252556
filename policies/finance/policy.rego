# Finance: the shared guardrails and least privilege, plus
#
#   - traders read market data and place orders only in market hours
#     (weekdays, data.finance.market_hours, in UTC, except market holidays)
#     and only from approved regions;
#   - an order must be well formed, within the largest notional limit of the
#     agent's roles (or of a temporary limit a risk officer approved, a
#     grant: grants.rego), and with an approved counterparty;
#   - no finance agent ever touches customer PII, not even by delegation.
package warden.authz

import data.warden.guardrails
import data.warden.rbac

default allow := false

# Allowed only what one of the agent's roles is granted (data.permissions).
allow if rbac.permitted

deny contains reason if some reason in guardrails.deny

# What untrusted content may have steered waits for a person.
obligations["require_approvals"] := guardrails.approval_rule if guardrails.needs_approval

# Missing configuration must not silently switch a check off.
deny contains "finance_not_configured" if not configured

# Trading window

deny contains "outside_market_hours" if {
	trading
	not market_open
}

deny contains "region_not_approved" if {
	trading
	not region_approved
}

# Orders

deny contains "order_invalid" if {
	order_placement
	not valid_order
}

deny contains "notional_limit_exceeded" if {
	order_placement
	valid_order
	notional > max(notional_limits)
}

deny contains "no_notional_limit" if {
	order_placement
	count(notional_limits) == 0
}

deny contains "counterparty_not_approved" if {
	order_placement
	not counterparty_approved
}

# Customer PII

deny contains "customer_pii_forbidden" if {
	input.resource.attributes.pii == true
	finance_agent
}

deny contains "customer_pii_forbidden" if {
	input.resource.attributes.pii == true
	finance_delegation
}

configured if {
	is_array(data.finance.business_units)
	is_array(data.finance.trading_roles)
	is_array(data.finance.market_data_ids)
	is_array(data.finance.market_hours.days)
	is_string(data.finance.market_hours.open)
	is_string(data.finance.market_hours.close)
	is_array(data.finance.market_holidays)
	is_array(data.finance.approved_regions)
	is_array(data.finance.order_tools)
	is_object(data.finance.max_notional)
	is_array(data.finance.approved_counterparties)
}

# Trading is a trader's market data access, and any order placement.
trading if {
	trader
	market_data
}

trading if order_placement

trader if {
	some role in input.agent.roles
	role in data.finance.trading_roles
}

market_data if {
	some pattern in data.finance.market_data_ids
	rbac.id_matches(pattern, input.resource.id)
}

order_placement if {
	input.action == "tools/call"
	input.resource.kind == "mcp.tool"
	input.resource.id in data.finance.order_tools
}

valid_order if {
	is_string(input.args.symbol)
	input.args.side in {"buy", "sell"}
	is_number(input.args.quantity)
	input.args.quantity > 0
	is_number(input.args.price)
	input.args.price > 0
}

notional := input.args.quantity * input.args.price

# The limits of the agent's roles; the largest applies.
notional_limits contains limit if {
	some role in input.agent.roles
	limit := data.finance.max_notional[role]
}

# A temporary limit: a grant in force (of the agent, in its task) that
# raises it, approved by a risk officer.
notional_limits contains limit if {
	some g in input.context.grants
	"raise_limit" in g.actions
	"finance/notional_limit" in g.resources
	limit := g.constraints.max_notional
	is_number(limit)
	limit <= data.finance.max_temporary_notional
}

# Checks that deny rules negate are rules of their own: a negated
# membership test on a missing value (or missing data) would be undefined,
# and so would its negation, and nothing would be denied.
region_approved if input.context.source.region in data.finance.approved_regions

counterparty_approved if input.args.counterparty in data.finance.approved_counterparties

# A finance agent: its id's first path segment is a finance business unit.
finance_agent if input.agent.path[0] in data.finance.business_units

# An agent in the delegation chain is a finance agent.
finance_delegation if {
	some actor in input.context.delegation
	segments := split(trim_prefix(actor, "ai-agent://"), "/")
	segments[1] in data.finance.business_units
}

# The clock: the decision's time, in UTC.
now_ns := time.parse_rfc3339_ns(input.context.time) if {
	input.context.time
} else := time.now_ns()

market_open if {
	time.weekday(now_ns) in data.finance.market_hours.days
	not market_holiday
	minute_of_day >= clock_minutes(data.finance.market_hours.open)
	minute_of_day < clock_minutes(data.finance.market_hours.close)
}

market_holiday if sprintf("%04d-%02d-%02d", time.date(now_ns)) in data.finance.market_holidays

minute_of_day := (hour * 60) + minute if [hour, minute, _] := time.clock(now_ns)

# "14:30" is 870.
clock_minutes(hhmm) := (to_number(hour) * 60) + to_number(minute) if [hour, minute] := split(hhmm, ":")
