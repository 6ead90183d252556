package warden.grants_test

import data.warden.grants

raise(roles, limit) := {
	"requester": {"id": "ai-agent://prod/finance/trading-optimizer", "kind": "agent", "roles": roles},
	"agent": {"id": "ai-agent://prod/finance/trading-optimizer", "roles": roles, "owner": "team-quant", "status": "active", "attributes": {}},
	"grant": {"task": "", "actions": ["raise_limit"], "resources": ["finance/notional_limit"], "constraints": {"max_notional": limit}, "lifetime_seconds": 1800, "reason": "rebalance"},
	"context": {"time": "2026-03-10T15:00:00Z"},
}

test_a_higher_limit_waits_for_a_risk_officer if {
	d := grants.decision with input as raise(["trader"], 1000000)
	d.outcome == "approval"
	d.require_approvals == {"count": 1, "roles": ["risk-officer"], "humans": 1}
}

test_above_the_temporary_ceiling_refused if {
	grants.decision.outcome == "deny" with input as raise(["trader"], 5000001)
}

test_non_traders_refused if {
	grants.decision.outcome == "deny" with input as raise(["analyst"], 1000000)
}
