# Unit tests of the baseline policy on the bundle's own data.json. Unit
# tests do not see the resource catalog merged in (the engine does that for
# live decisions and cases), so inputs carry the attributes themselves.
package warden.authz_test

import data.warden.authz

triage := {
	"id": "ai-agent://prod/support/ticket-triage",
	"trust_domain": "prod",
	"path": ["support", "ticket-triage"],
	"roles": ["support-agent"],
	"owner": "team-support",
	"attributes": {},
	"status": "active",
}

context := {
	"time": "2026-03-10T15:00:00Z",
	"source": {"ip": "10.1.2.3", "region": "eu-west"},
	"risk": {"score": 12, "level": "low", "signals": []},
	"session": {"id": "s-1", "taints": []},
	"grants": [],
	"delegation": [],
	"approvals": [],
}

request(agent, action, kind, id, attributes) := {
	"agent": agent,
	"action": action,
	"resource": {"kind": kind, "id": id, "attributes": attributes},
	"args": {},
	"context": context,
}

# What the engine reads: allow, and deny reasons.
allowed(inp) if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
}

reasons(inp) := r if {
	r := authz.deny with input as inp
}

test_default_is_deny if {
	not authz.allow with input as {}
	not authz.allow with input as request(triage, "tools/call", "mcp.tool", "payments/refund", {"trust_domain": "prod"})
}

test_granted_tool_call_allowed if {
	allowed(request(triage, "tools/call", "mcp.tool", "tickets/add_comment", {"trust_domain": "prod"}))
}

test_granted_prefix_allowed if {
	allowed(request(triage, "tools/call", "mcp.tool", "kb/search", {"trust_domain": "prod", "read_only": true}))
	allowed(request(triage, "resources/read", "mcp.resource", "kb/articles/password-reset", {"trust_domain": "prod"}))
	allowed(request(triage, "prompts/get", "mcp.prompt", "support/summarise-ticket", {"trust_domain": "prod"}))
}

test_ungranted_action_on_granted_resource_denied if {
	not authz.allow with input as request(triage, "resources/read", "mcp.tool", "tickets/get", {"trust_domain": "prod"})
	reasons(request(triage, "resources/read", "mcp.tool", "tickets/get", {"trust_domain": "prod"})) == set()
}

test_guardrail_reasons_are_the_policy_reasons if {
	inp := request(object.union(triage, {"status": "quarantined"}), "tools/call", "mcp.tool", "tickets/get", {"trust_domain": "prod"})
	authz.allow with input as inp
	reasons(inp) == {"agent_quarantined"}
}

test_pii_tool_for_crm_readers_only if {
	attrs := {"trust_domain": "prod", "read_only": true, "pii": true}
	care := object.union(triage, {"id": "ai-agent://prod/support/customer-care", "roles": ["support-agent", "crm-reader"]})
	allowed(request(care, "tools/call", "mcp.tool", "crm/lookup_customer", attrs))
	outreach := object.union(triage, {"id": "ai-agent://prod/sales/outreach-writer", "roles": ["outreach"]})
	reasons(request(outreach, "tools/call", "mcp.tool", "crm/lookup_customer", attrs)) == {"pii_not_permitted"}
}

test_reporting_reads_the_analytics_warehouse if {
	reporter := object.union(triage, {"id": "ai-agent://prod/finance/weekly-report", "roles": ["reporting"]})
	allowed(request(reporter, "db:select", "db.table", "warehouse/sales_daily", {"trust_domain": "analytics"}))
}

test_tainted_researcher_cannot_browse_out if {
	researcher := object.union(triage, {"id": "ai-agent://prod/research/web-researcher", "roles": ["researcher"]})
	inp := request(researcher, "http:GET", "http.route", "en.wikipedia.org/wiki/Zero_trust", {"external": true})
	allowed(inp)
	tainted := object.union(inp, {"context": {"session": {"taints": ["untrusted_content"]}}})
	reasons(tainted) == {"tainted_session_egress"}
}

test_shipped_data_configures_the_guardrails if {
	data.warden.guardrails.configured
}
