# Unit tests of the shared guardrails. They mock every piece of data the
# guardrails read, so they pass the same in every bundle that links them.
package warden.guardrails_test

import data.warden.guardrails

config := {
	"cross_domain": [{"from": "prod", "to": "analytics", "actions": ["db:select"]}],
	"pii_roles": ["crm-reader"],
	"risk": {"deny_at": 80, "deny_levels": ["high"]},
	"read_actions": ["tools/list", "resources/read", "prompts/get", "http:GET", "db:select"],
	"egress_taints": ["untrusted_content"],
	"max_delegation_depth": 2,
}

base := {
	"agent": {
		"id": "ai-agent://prod/support/ticket-triage",
		"trust_domain": "prod",
		"path": ["support", "ticket-triage"],
		"roles": ["support-agent"],
		"owner": "team-support",
		"attributes": {},
		"status": "active",
	},
	"action": "tools/call",
	"resource": {"kind": "mcp.tool", "id": "tickets/add_comment", "attributes": {"trust_domain": "prod"}},
	"args": {"ticket": "T-1042", "body": "Escalated to tier 2."},
	"context": {
		"time": "2026-03-10T15:00:00Z",
		"source": {"ip": "10.1.2.3", "region": "eu-west"},
		"risk": {"score": 12, "level": "low", "signals": []},
		"session": {"id": "s-1", "taints": []},
		"grants": [],
		"delegation": [],
		"approvals": [],
	},
}

# The input, with some fields replaced (objects merge, other values replace).
with_input(overrides) := object.union(base, overrides)

reasons(inp) := r if {
	r := guardrails.deny with input as inp
		with data.cross_domain as config.cross_domain
		with data.pii_roles as config.pii_roles
		with data.risk as config.risk
		with data.read_actions as config.read_actions
		with data.egress_taints as config.egress_taints
		with data.max_delegation_depth as config.max_delegation_depth
}

reads(inp) if {
	guardrails.is_read with input as inp with data.read_actions as config.read_actions
}

writes(inp) if {
	guardrails.is_write with input as inp with data.read_actions as config.read_actions
}

test_clean_action_has_no_reason if {
	reasons(base) == set()
}

# Status

test_active_and_restricted_are_known if {
	reasons(base) == set()
	reasons(with_input({"action": "resources/read", "agent": {"status": "restricted"}})) == set()
}

test_quarantined_agent_denied if {
	reasons(with_input({"agent": {"status": "quarantined"}})) == {"agent_quarantined"}
}

test_disabled_agent_denied if {
	reasons(with_input({"agent": {"status": "disabled"}})) == {"agent_disabled"}
}

test_unknown_status_denied if {
	reasons(with_input({"agent": {"status": "suspended"}})) == {"agent_status_unknown"}
}

test_missing_status_denied if {
	inp := json.remove(base, ["agent/status"])
	reasons(inp) == {"agent_status_unknown"}
}

# Restricted agents read only

test_restricted_agent_may_read if {
	every action in ["tools/list", "resources/read", "prompts/get", "http:GET", "db:select"] {
		reasons(with_input({"action": action, "agent": {"status": "restricted"}})) == set()
	}
}

test_restricted_agent_may_call_read_only_tool if {
	inp := with_input({
		"agent": {"status": "restricted"},
		"resource": {"id": "tickets/get", "attributes": {"read_only": true}},
	})
	reasons(inp) == set()
}

test_restricted_agent_may_not_write if {
	reasons(with_input({"agent": {"status": "restricted"}})) == {"agent_restricted_read_only"}
	reasons(with_input({"action": "http:POST", "agent": {"status": "restricted"}})) == {"agent_restricted_read_only"}
}

test_read_only_hint_counts_for_tool_calls_only if {
	inp := with_input({
		"action": "http:DELETE",
		"agent": {"status": "restricted"},
		"resource": {"kind": "http.route", "id": "api.internal/v1/tickets/1", "attributes": {"read_only": true}},
	})
	reasons(inp) == {"agent_restricted_read_only"}
}

test_read_only_must_be_true if {
	inp := with_input({"agent": {"status": "restricted"}, "resource": {"attributes": {"read_only": "yes"}}})
	reasons(inp) == {"agent_restricted_read_only"}
}

test_is_read_and_is_write if {
	reads(with_input({"action": "resources/read"}))
	reads(with_input({"resource": {"attributes": {"read_only": true}}}))
	not reads(base)
	writes(base)
	not writes(with_input({"action": "http:GET"}))
}

# Trust domains

test_cross_trust_domain_denied if {
	inp := with_input({"resource": {"attributes": {"trust_domain": "payments"}}})
	reasons(inp) == {"cross_trust_domain"}
}

test_staging_agent_cannot_reach_prod if {
	inp := with_input({"agent": {"id": "ai-agent://staging/support/ticket-triage", "trust_domain": "staging"}})
	reasons(inp) == {"cross_trust_domain"}
}

test_allowed_crossing if {
	inp := with_input({
		"action": "db:select",
		"resource": {"kind": "db.table", "id": "warehouse/sales_daily", "attributes": {"trust_domain": "analytics"}},
	})
	reasons(inp) == set()
}

test_allowed_crossing_is_for_its_actions_only if {
	inp := with_input({
		"action": "db:insert",
		"resource": {"kind": "db.table", "id": "warehouse/sales_daily", "attributes": {"trust_domain": "analytics"}},
	})
	reasons(inp) == {"cross_trust_domain"}
}

test_allowed_crossing_is_one_way if {
	inp := with_input({
		"action": "db:select",
		"agent": {"id": "ai-agent://analytics/bi/report-builder", "trust_domain": "analytics"},
		"resource": {"kind": "db.table", "id": "orders/open", "attributes": {"trust_domain": "prod"}},
	})
	reasons(inp) == {"cross_trust_domain"}
}

test_resource_without_trust_domain_is_not_a_crossing if {
	inp := json.remove(base, ["resource/attributes/trust_domain"])
	reasons(inp) == set()
}

test_null_trust_domain_is_a_crossing if {
	reasons(with_input({"resource": {"attributes": {"trust_domain": null}}})) == {"cross_trust_domain"}
}

test_agent_without_trust_domain_crosses_every_domain if {
	inp := json.remove(base, ["agent/trust_domain"])
	reasons(inp) == {"cross_trust_domain"}
}

# Personal data

test_pii_denied_without_pii_role if {
	inp := with_input({"resource": {"id": "crm/lookup_customer", "attributes": {"pii": true}}})
	reasons(inp) == {"pii_not_permitted"}
}

test_pii_allowed_with_pii_role if {
	inp := with_input({
		"agent": {"roles": ["support-agent", "crm-reader"]},
		"resource": {"id": "crm/lookup_customer", "attributes": {"pii": true}},
	})
	reasons(inp) == set()
}

test_pii_false_needs_no_role if {
	reasons(with_input({"resource": {"attributes": {"pii": false}}})) == set()
}

# Risk

test_risk_at_threshold_denied if {
	reasons(with_input({"context": {"risk": {"score": 80, "level": "medium"}}})) == {"risk_too_high"}
	reasons(with_input({"context": {"risk": {"score": 97, "level": "medium"}}})) == {"risk_too_high"}
}

test_risk_below_threshold_allowed if {
	reasons(with_input({"context": {"risk": {"score": 79, "level": "medium"}}})) == set()
}

test_high_risk_level_denied if {
	reasons(with_input({"context": {"risk": {"score": 40, "level": "high"}}})) == {"risk_too_high"}
}

# The guardrails with the shipped risk settings: reads only at high,
# nothing at critical, and (where a bundle says so) nothing while the
# monitor is behind.
risk_reasons(inp, risk) := r if {
	r := guardrails.deny with input as inp
		with data.cross_domain as config.cross_domain
		with data.pii_roles as config.pii_roles
		with data.risk as risk
		with data.read_actions as config.read_actions
		with data.egress_taints as config.egress_taints
		with data.max_delegation_depth as config.max_delegation_depth
}

shipped_risk := {"deny_at": 90, "deny_levels": ["critical"], "read_only_levels": ["high"], "deny_when_stale": false}

test_high_risk_reads_only if {
	high := {"context": {"risk": {"score": 60, "level": "high", "signals": ["deny_burst"]}}}
	risk_reasons(with_input(high), shipped_risk) == {"risk_read_only"}
	risk_reasons(with_input(object.union(high, {"action": "resources/read"})), shipped_risk) == set()
}

test_critical_risk_does_nothing if {
	crit := {"action": "resources/read", "context": {"risk": {"score": 80, "level": "critical", "signals": []}}}
	risk_reasons(with_input(crit), shipped_risk) == {"risk_too_high"}
}

test_stale_risk_denies_only_where_the_bundle_says_so if {
	stale := {"context": {"risk": {"score": 0, "level": "low", "signals": [], "stale": true}}}
	risk_reasons(with_input(stale), shipped_risk) == set()
	risk_reasons(with_input(stale), object.union(shipped_risk, {"deny_when_stale": true})) == {"risk_unknown"}
}

test_missing_risk_is_not_a_deny if {
	inp := json.remove(base, ["context/risk"])
	reasons(inp) == set()
}

# Tainted sessions

test_tainted_session_cannot_reach_external if {
	inp := with_input({
		"resource": {"id": "email/send", "attributes": {"external": true}},
		"context": {"session": {"taints": ["untrusted_content"]}},
	})
	reasons(inp) == {"tainted_session_egress"}
}

test_tainted_session_cannot_reach_egress_tools if {
	inp := with_input({
		"resource": {"id": "web/post", "attributes": {"egress": true}},
		"context": {"session": {"taints": ["untrusted_content"]}},
	})
	reasons(inp) == {"tainted_session_egress"}
}

test_tainted_session_may_act_internally if {
	inp := with_input({"context": {"session": {"taints": ["untrusted_content"]}}})
	reasons(inp) == set()
}

test_clean_session_may_reach_external if {
	inp := with_input({"resource": {"id": "email/send", "attributes": {"external": true}}})
	reasons(inp) == set()
}

test_other_taints_do_not_block_egress if {
	inp := with_input({
		"resource": {"id": "email/send", "attributes": {"external": true}},
		"context": {"session": {"taints": ["long_running"]}},
	})
	reasons(inp) == set()
}

# Delegation

test_delegation_within_depth if {
	chain := ["ai-agent://prod/support/orchestrator", "ai-agent://prod/support/planner"]
	reasons(with_input({"context": {"delegation": chain}})) == set()
}

test_delegation_too_deep if {
	chain := [
		"ai-agent://prod/support/orchestrator",
		"ai-agent://prod/support/planner",
		"ai-agent://prod/support/sub-planner",
	]
	reasons(with_input({"context": {"delegation": chain}})) == {"delegation_too_deep"}
}

# Configuration

test_configured if {
	guardrails.configured with data.cross_domain as config.cross_domain
		with data.pii_roles as config.pii_roles
		with data.risk as config.risk
		with data.read_actions as config.read_actions
		with data.egress_taints as config.egress_taints
		with data.max_delegation_depth as config.max_delegation_depth
}

test_missing_configuration_denies_everything if {
	r := guardrails.deny with input as base
		with data.cross_domain as config.cross_domain
		with data.pii_roles as config.pii_roles
		with data.risk as {"deny_levels": ["high"]}
		with data.read_actions as config.read_actions
		with data.egress_taints as config.egress_taints
		with data.max_delegation_depth as config.max_delegation_depth
	r == {"guardrails_not_configured"}
}

test_several_reasons_at_once if {
	inp := with_input({
		"agent": {"status": "quarantined"},
		"resource": {"id": "email/send", "attributes": {"external": true, "pii": true, "trust_domain": "payments"}},
		"context": {"risk": {"score": 91, "level": "high"}, "session": {"taints": ["untrusted_content"]}},
	})
	reasons(inp) == {
		"agent_quarantined",
		"cross_trust_domain",
		"pii_not_permitted",
		"risk_too_high",
		"tainted_session_egress",
	}
}

test_missing_action_is_not_read_and_crosses if {
	inp := json.remove(base, ["action"])
	reasons(inp) == set()
	reasons(object.union(inp, {"agent": {"status": "restricted"}})) == {"agent_restricted_read_only"}
	reasons(object.union(inp, {"resource": {"attributes": {"trust_domain": "analytics"}}})) == {"cross_trust_domain"}
}

test_missing_agent_is_unknown if {
	reasons(json.remove(base, ["agent"])) == {"agent_status_unknown", "cross_trust_domain"}
}

# Provenance: where the enforcement point says where arguments came from.

# As the decision point writes it: each argument's origin, and the summary
# the rules read.
prov(args) := {
	"known": true, "args": args, "read_untrusted": true, "forgotten": false,
	"untrusted": sort([p | some p, o in args; o.only_untrusted]),
	"unknown": sort([p | some p, o in args; o.sources == ["unknown"]]),
	"arguments": count(args),
}

untrusted_arg := {"sources": ["untrusted"], "only_untrusted": true, "values": 1, "upstreams": ["web"], "tools": ["fetch"], "reads": [9]}

trusted_arg := {"sources": ["trusted"], "only_untrusted": false, "values": 1, "upstreams": ["contacts"], "tools": ["lookup"], "reads": [7]}

user_arg := {"sources": ["user"], "only_untrusted": false, "values": 1, "upstreams": [], "tools": [], "reads": []}

egress_send := with_input({
	"action": "tools/call",
	"resource": {"id": "mail/send", "attributes": {"egress": true}},
	"context": {"session": {"taints": ["untrusted_content"]}},
})

send_with(args) := object.union(egress_send, {"context": {"provenance": prov(args)}})

test_untrusted_recipient_denied if {
	"target_from_untrusted_content" in reasons(send_with({"to": untrusted_arg, "body": user_arg}))
}

test_recipient_from_a_trusted_tool_in_a_tainted_session_allowed if {
	r := reasons(send_with({"to": trusted_arg, "body": untrusted_arg}))
	not "target_from_untrusted_content" in r
	not "tainted_session_egress" in r
	not "arguments_from_untrusted_content" in r
}

test_recipient_the_user_gave_allowed if {
	reasons(send_with({"to": user_arg})) == set()
}

test_nested_target_denied if {
	"target_from_untrusted_content" in reasons(send_with({"payment.iban": untrusted_arg, "amount": user_arg}))
}

test_every_argument_from_untrusted_content_waits_for_a_person if {
	inp := send_with({"subject": untrusted_arg, "body": untrusted_arg})
	not "arguments_from_untrusted_content" in reasons(inp)
	guardrails.needs_approval with input as inp
	guardrails.approval_rule == {"count": 1, "humans": 1}
}

test_every_argument_from_untrusted_content_denied_without_approvals if {
	r := guardrails.deny with input as send_with({"subject": untrusted_arg, "body": untrusted_arg}) with data.provenance as {"approve": false}
	"arguments_from_untrusted_content" in r
}

test_a_large_amount_from_untrusted_content_waits_for_a_person if {
	pay := object.union(send_with({"iban": trusted_arg, "amount": untrusted_arg}), {"args": {"iban": "DE89370400440532013000", "amount": 9500}})
	guardrails.needs_approval with input as pay with data.provenance as {"approval_amount": 5000}
	not guardrails.needs_approval with input as object.union(pay, {"args": {"amount": 950}}) with data.provenance as {"approval_amount": 5000}
	not guardrails.needs_approval with input as pay
}

test_without_provenance_the_taint_rule_holds if {
	"tainted_session_egress" in reasons(egress_send)
}

test_taint_mode_keeps_the_blunt_rule if {
	r := guardrails.deny with input as send_with({"to": trusted_arg}) with data.provenance as {"mode": "taint"}
	"tainted_session_egress" in r
}

unknown_arg := {"sources": ["unknown"], "only_untrusted": false, "values": 1, "upstreams": [], "tools": [], "reads": []}

test_unknown_target_after_untrusted_content_denied if {
	"target_from_unknown_source" in reasons(send_with({"to": unknown_arg}))
	untainted := object.union(send_with({"to": unknown_arg}), {"context": {"session": {"taints": []}}})
	not "target_from_unknown_source" in reasons(untainted)
}

test_target_words_in_any_case_and_form if {
	"target_from_untrusted_content" in reasons(send_with({"recipient_email": untrusted_arg}))
	"target_from_untrusted_content" in reasons(send_with({"Payment.IBAN": untrusted_arg}))
	not "target_from_untrusted_content" in reasons(send_with({"subject": untrusted_arg, "to": user_arg}))
}

test_amounts_in_strings_and_lists_wait_for_a_person if {
	pay := object.union(send_with({"iban": trusted_arg, "payments.0.amount": untrusted_arg}), {"args": {"payments": [{"amount": "9500"}]}})
	guardrails.needs_approval with input as pay with data.provenance as {"approval_amount": 5000}
}

test_an_unknown_extra_argument_does_not_make_the_rest_the_users if {
	guardrails.needs_approval with input as send_with({"subject": untrusted_arg, "body": untrusted_arg, "limit": unknown_arg})
	not guardrails.needs_approval with input as send_with({"subject": untrusted_arg, "limit": unknown_arg, "to": user_arg})
}
