# Unit tests of the finance policy on the bundle's own data.json. Unit tests
# do not see the resource catalog merged in, so inputs carry the attributes.
package warden.authz_test

import data.warden.authz

trader := {
	"id": "ai-agent://prod/finance/trading-optimizer",
	"trust_domain": "prod",
	"path": ["finance", "trading-optimizer"],
	"roles": ["trader"],
	"owner": "team-quant",
	"attributes": {"desk": "us-equities"},
	"status": "active",
}

senior_trader := object.union(trader, {"id": "ai-agent://prod/finance/block-trader", "path": ["finance", "block-trader"], "roles": ["senior-trader", "trader"]})

risk_analyst := object.union(trader, {"id": "ai-agent://prod/finance/risk-monitor", "path": ["finance", "risk-monitor"], "roles": ["risk-analyst"]})

# A compliance agent, outside the finance business unit.
kyc_screener := object.union(trader, {"id": "ai-agent://prod/compliance/kyc-screener", "path": ["compliance", "kyc-screener"], "roles": ["kyc-analyst"], "owner": "team-compliance"})

# Tuesday 10 March 2026, 16:00 UTC: the market is open.
open_time := "2026-03-10T16:00:00Z"

context := {
	"time": open_time,
	"source": {"ip": "10.1.2.3", "region": "us-east"},
	"risk": {"score": 12, "level": "low", "signals": []},
	"session": {"id": "s-1", "taints": []},
	"grants": [],
	"delegation": [],
	"approvals": [],
}

quote := {
	"agent": trader,
	"action": "tools/call",
	"resource": {"kind": "mcp.tool", "id": "market-data/get_quote", "attributes": {"trust_domain": "prod", "read_only": true}},
	"args": {"symbol": "ACME"},
	"context": context,
}

order := {
	"agent": trader,
	"action": "tools/call",
	"resource": {"kind": "mcp.tool", "id": "trading/place_order", "attributes": {"trust_domain": "prod"}},
	"args": {"symbol": "ACME", "side": "buy", "quantity": 1000, "price": 187.5, "counterparty": "GS-PRIME"},
	"context": context,
}

customers := {
	"agent": kyc_screener,
	"action": "resources/read",
	"resource": {"kind": "mcp.resource", "id": "crm/customers", "attributes": {"trust_domain": "prod", "pii": true}},
	"args": {},
	"context": context,
}

at(inp, t) := object.union(inp, {"context": {"time": t}})

from_region(inp, region) := object.union(inp, {"context": {"source": {"region": region}}})

with_args(inp, args) := object.union(inp, {"args": args})

allowed(inp) if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
}

reasons(inp) := r if {
	r := authz.deny with input as inp
}

# Least privilege

test_default_is_deny if {
	not authz.allow with input as {}
	not authz.allow with input as object.union(quote, {"resource": {"id": "crm/lookup_customer"}})
}

test_shipped_data_configures_the_guardrails if {
	data.warden.guardrails.configured
}

test_guardrails_apply if {
	reasons(object.union(quote, {"agent": {"status": "quarantined"}})) == {"agent_quarantined"}
}

test_shared_reference_data_across_trust_domains if {
	allowed(object.union(quote, {"resource": {"id": "refdata/isin_lookup", "attributes": {"trust_domain": "shared"}}}))
}

# Market data: hours

test_trader_reads_market_data_in_market_hours if {
	allowed(quote)
	allowed(object.union(quote, {"action": "resources/read", "resource": {"kind": "mcp.resource", "id": "market-data/ACME/level1"}}))
}

test_market_opens_at_1430_utc if {
	reasons(at(quote, "2026-03-10T14:29:59Z")) == {"outside_market_hours"}
	allowed(at(quote, "2026-03-10T14:30:00Z"))
}

test_market_closes_at_2100_utc if {
	allowed(at(quote, "2026-03-10T20:59:59Z"))
	reasons(at(quote, "2026-03-10T21:00:00Z")) == {"outside_market_hours"}
}

test_market_closed_at_night if {
	reasons(at(quote, "2026-03-10T03:00:00Z")) == {"outside_market_hours"}
}

test_market_closed_on_weekends if {
	reasons(at(quote, "2026-03-14T16:00:00Z")) == {"outside_market_hours"}
	reasons(at(quote, "2026-03-15T16:00:00Z")) == {"outside_market_hours"}
}

test_market_closed_on_holidays if {
	reasons(at(quote, "2026-11-26T16:00:00Z")) == {"outside_market_hours"}
	allowed(at(quote, "2026-11-27T16:00:00Z"))
}

test_design_example_is_outside_market_hours if {
	reasons(at(quote, "2026-11-27T10:00:00Z")) == {"outside_market_hours"}
}

test_time_with_offset_is_read_in_utc if {
	# 11:00 in New York (UTC-5) is 16:00 UTC.
	allowed(at(quote, "2026-03-10T11:00:00-05:00"))
	reasons(at(quote, "2026-03-10T16:00:00-05:00")) == {"outside_market_hours"}
}

test_without_context_time_the_decision_clock_is_used if {
	inp := json.remove(quote, ["context/time"])
	tuesday_1600 := time.parse_rfc3339_ns(open_time)
	saturday_1600 := time.parse_rfc3339_ns("2026-03-14T16:00:00Z")
	allowed(inp) with time.now_ns as tuesday_1600
	reasons(inp) == {"outside_market_hours"} with time.now_ns as saturday_1600
}

# Market data: regions

test_market_data_from_unapproved_region_denied if {
	reasons(from_region(quote, "ap-south")) == {"region_not_approved"}
	allowed(from_region(quote, "eu-west"))
}

test_market_data_without_region_denied if {
	reasons(json.remove(quote, ["context/source/region"])) == {"region_not_approved"}
}

test_hours_and_region_together if {
	reasons(from_region(at(quote, "2026-03-14T16:00:00Z"), "ap-south")) == {"outside_market_hours", "region_not_approved"}
}

test_non_traders_read_market_data_any_time_anywhere if {
	inp := from_region(at(object.union(quote, {"agent": risk_analyst}), "2026-03-15T02:00:00Z"), "ap-south")
	allowed(inp)
}

# Orders

test_order_within_limit_allowed if {
	allowed(order)
}

test_order_over_the_role_limit if {
	big := with_args(order, {"quantity": 2000})
	reasons(big) == {"notional_limit_exceeded"}
	allowed(object.union(big, {"agent": senior_trader}))
}

test_order_at_the_limit_allowed if {
	allowed(with_args(order, {"quantity": 1000, "price": 250}))
	reasons(with_args(order, {"quantity": 1000, "price": 250.01})) == {"notional_limit_exceeded"}
}

test_largest_limit_of_the_roles_applies if {
	allowed(object.union(with_args(order, {"quantity": 10000, "price": 200}), {"agent": senior_trader}))
	reasons(object.union(with_args(order, {"quantity": 10001, "price": 200}), {"agent": senior_trader})) == {"notional_limit_exceeded"}
}

test_order_without_a_limit_for_the_role if {
	r := reasons(object.union(order, {"agent": risk_analyst}))
	r == {"no_notional_limit"}
	not authz.allow with input as object.union(order, {"agent": risk_analyst})
}

test_malformed_orders_denied if {
	reasons(with_args(order, {"quantity": "1000"})) == {"order_invalid"}
	reasons(with_args(order, {"quantity": 0})) == {"order_invalid"}
	reasons(with_args(order, {"price": -1})) == {"order_invalid"}
	reasons(with_args(order, {"price": "market"})) == {"order_invalid"}
	reasons(with_args(order, {"side": "short"})) == {"order_invalid"}
	reasons(with_args(order, {"symbol": 42})) == {"order_invalid"}
	reasons(json.remove(order, ["args/quantity"])) == {"order_invalid"}
}

test_counterparty_must_be_approved if {
	reasons(with_args(order, {"counterparty": "SHADY-OTC"})) == {"counterparty_not_approved"}
	reasons(json.remove(order, ["args/counterparty"])) == {"counterparty_not_approved"}
	allowed(with_args(order, {"counterparty": "JPM-CLEARING"}))
}

test_orders_only_in_market_hours_from_approved_regions if {
	reasons(at(order, "2026-03-14T16:00:00Z")) == {"outside_market_hours"}
	reasons(from_region(order, "ap-south")) == {"region_not_approved"}
}

test_cancelling_is_not_placing if {
	cancel := object.union(order, {"resource": {"id": "trading/cancel_order"}, "args": {"order_id": "ORD-77"}})
	allowed(cancel)
	not authz.order_placement with input as cancel
}

test_order_tool_listing_is_not_placing if {
	listing := object.union(order, {"action": "tools/list", "args": {}})
	allowed(listing)
}

test_every_order_problem_at_once if {
	inp := with_args(order, {"quantity": 1000000, "counterparty": "SHADY-OTC"})
	reasons(inp) == {"notional_limit_exceeded", "counterparty_not_approved"}
}

# Customer PII

test_compliance_kyc_agent_reads_customers if {
	allowed(customers)
	allowed(object.union(customers, {"action": "tools/call", "resource": {"kind": "mcp.tool", "id": "crm/lookup_customer"}}))
}

test_finance_agent_never_reads_customer_pii if {
	finance_kyc := object.union(kyc_screener, {"id": "ai-agent://prod/finance/onboarding-checker", "path": ["finance", "onboarding-checker"]})
	reasons(object.union(customers, {"agent": finance_kyc})) == {"customer_pii_forbidden"}
}

test_trader_reading_customers_gets_both_reasons if {
	reasons(object.union(customers, {"agent": trader})) == {"customer_pii_forbidden", "pii_not_permitted"}
}

test_no_customer_pii_through_delegation_from_finance if {
	inp := object.union(customers, {"context": {"delegation": ["ai-agent://prod/finance/trading-optimizer"]}})
	reasons(inp) == {"customer_pii_forbidden"}
	other := object.union(customers, {"context": {"delegation": ["ai-agent://prod/compliance/case-manager"]}})
	allowed(other)
}

test_finance_agent_reads_non_pii if {
	not authz.finance_agent with input as customers
	authz.finance_agent with input as quote
}

# Helpers

test_clock_minutes if {
	authz.clock_minutes("14:30") == 870
	authz.clock_minutes("21:00") == 1260
	authz.clock_minutes("00:05") == 5
}

test_market_holiday if {
	authz.market_holiday with input as at(quote, "2026-12-25T15:00:00Z")
	not authz.market_holiday with input as at(quote, "2026-12-24T15:00:00Z")
}

# Missing configuration denies instead of switching a check off

test_missing_region_list_denies_trading if {
	r := authz.deny with input as quote with data.finance as object.remove(data.finance, ["approved_regions"])
	r == {"finance_not_configured", "region_not_approved"}
}

test_missing_counterparty_list_denies_orders if {
	r := authz.deny with input as order with data.finance as object.remove(data.finance, ["approved_counterparties"])
	r == {"counterparty_not_approved", "finance_not_configured"}
}

test_missing_configuration_denies_everything if {
	r := authz.deny with input as quote with data.finance as object.remove(data.finance, ["market_holidays"])
	r == {"finance_not_configured"}
	authz.configured
}
