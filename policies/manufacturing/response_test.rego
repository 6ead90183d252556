# Unit tests of the playbook.
package warden.response_test

import data.warden.response

alert(level, fired, signals) := {
	"agent": {"id": "ai-agent://prod/support/ticket-triage", "trust_domain": "prod", "roles": ["support-agent"], "owner": "team-support", "status": "active"},
	"risk": {"score": 0, "level": level, "signals": signals, "learning": false, "stale": false},
	"fired": fired,
	"event": {"audit_index": 42, "action": "tools/call", "resource": "mcp.tool:tickets/get", "outcome": "allow", "reasons": []},
	"incident": {"open": false, "actions": [], "level": ""},
}

names(input_doc) := {a.action | some a in response.actions with input as input_doc}

test_low_risk_does_nothing if {
	names(alert("low", ["new_resource"], ["new_resource"])) == set()
}

test_medium_risk_alerts_and_steps_up if {
	names(alert("medium", ["rate_spike"], ["rate_spike"])) == {"alert", "step_up"}
}

test_high_risk_restricts_for_an_hour if {
	names(alert("high", ["deny_ratio"], ["deny_ratio", "rate_spike"])) == {"alert", "step_up", "restrict"}
	some a in response.actions with input as alert("high", ["deny_ratio"], ["deny_ratio"])
	a.action == "restrict"
	a.expires == "1h"
}

test_critical_risk_quarantines_and_revokes_until_released if {
	acts := response.actions with input as alert("critical", ["deny_burst"], ["deny_burst"])
	{a.action | some a in acts} == {"alert", "quarantine", "revoke_tokens"}
	every a in acts {
		not a.expires
	}
}

test_tainted_egress_with_another_signal_quarantines_at_once if {
	names(alert("medium", ["tainted_egress"], ["tainted_egress", "new_resource"])) == {"alert", "step_up", "quarantine"}
}

test_tainted_egress_alone_does_not_quarantine if {
	names(alert("medium", ["tainted_egress"], ["tainted_egress"])) == {"alert", "step_up"}
}

test_refused_credentials_while_probing_revoke_tokens if {
	"revoke_tokens" in names(alert("low", ["auth_failures"], ["auth_failures", "deny_burst"]))
}
