# Unit tests of the manufacturing policy on the bundle's own data.json.
# Unit tests do not see the resource catalog merged in, so inputs carry the
# attributes the catalog gives. Unit tests see the policy's obligations;
# turning require_approvals into pending or allow is the engine's part, and
# the decision cases check it.
package warden.authz_test

import data.warden.authz

oven_tuner := {
	"id": "ai-agent://prod/plant-berlin/oven-tuner",
	"trust_domain": "prod",
	"path": ["plant-berlin", "oven-tuner"],
	"roles": ["process-tuner"],
	"owner": "team-process-eng",
	"attributes": {"segment": "ics", "plant": "berlin"},
	"status": "active",
}

scheduler := object.union(oven_tuner, {
	"id": "ai-agent://prod/plant-berlin/production-scheduler",
	"path": ["plant-berlin", "production-scheduler"],
	"roles": ["production-scheduler"],
	"owner": "team-mes",
	"attributes": {"segment": "mes"},
})

planner := object.union(oven_tuner, {
	"id": "ai-agent://prod/plant-berlin/maintenance-planner",
	"path": ["plant-berlin", "maintenance-planner"],
	"roles": ["maintenance-planner"],
	"owner": "team-maintenance",
	"attributes": {"segment": "it"},
})

context := {
	"time": "2026-03-10T06:40:00Z",
	"source": {"ip": "10.80.3.21", "region": "eu-central"},
	"risk": {"score": 8, "level": "low", "signals": []},
	"session": {"id": "s-1", "taints": []},
	"grants": [],
	"delegation": [],
	"approvals": [],
}

set_temperature := {
	"kind": "mcp.tool",
	"id": "plc/line-3/oven/set_temperature",
	"attributes": {"trust_domain": "prod", "segment": "ics", "physical": true, "safe_range": {"arg": "celsius", "min": 150, "max": 230}},
}

read_temperature := {
	"kind": "mcp.tool",
	"id": "plc/line-3/oven/read_temperature",
	"attributes": {"trust_domain": "prod", "segment": "ics", "physical": true, "read_only": true},
}

work_orders := {"kind": "mcp.tool", "id": "mes/work_orders/list", "attributes": {"trust_domain": "prod", "segment": "mes", "read_only": true}}

requisition := {"kind": "mcp.tool", "id": "erp/purchasing/create_requisition", "attributes": {"trust_domain": "prod", "segment": "it"}}

call(agent, resource, args) := {"agent": agent, "action": "tools/call", "resource": resource, "args": args, "context": context}

setpoint(celsius) := call(oven_tuner, set_temperature, {"celsius": celsius})

approved_by(inp, approvals) := object.union(inp, {"context": {"approvals": approvals}})

maria := {"by": "human:https://idp.plant.example#maria", "email": "maria.keller@plant.example", "kind": "human", "role": "safety-reviewer"}

tomas := {"by": "human:https://idp.plant.example#tomas", "email": "tomas.novak@plant.example", "kind": "human", "role": "safety-reviewer"}

two_reviewers := {"require_approvals": {"count": 2, "roles": ["safety-reviewer"], "humans": 1, "agents": 1}}

allowed(inp) if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
}

reasons(inp) := r if {
	r := authz.deny with input as inp
}

obligations(inp) := o if {
	o := authz.obligations with input as inp
}

test_default_is_deny if {
	not authz.allow with input as {}
	not authz.allow with input as call(scheduler, requisition, {})
}

test_shipped_data_configures_the_guardrails if {
	data.warden.guardrails.configured
}

# Segments

test_ics_agent_reaches_ics if {
	allowed(call(oven_tuner, read_temperature, {}))
}

test_ics_is_reachable_only_from_ics if {
	reasons(call(planner, read_temperature, {})) == {"segment_isolation"}
	reasons(call(scheduler, read_temperature, {})) == {"segment_isolation"}
}

test_rbac_grant_does_not_cross_segments if {
	# The planner's role grants the temperature read; its segment does not.
	authz.allow with input as call(planner, read_temperature, {})
	not allowed(call(planner, read_temperature, {}))
}

test_mes_is_reachable_from_it_mes_and_ics if {
	allowed(call(planner, work_orders, {}))
	allowed(call(scheduler, work_orders, {}))
	historian := {"kind": "mcp.tool", "id": "historian/line-3/query", "attributes": {"segment": "mes", "read_only": true}}
	allowed(call(oven_tuner, historian, {"tag": "oven.zone2.temp", "window": "1h"}))
}

test_ics_agents_do_not_reach_it if {
	reasons(call(oven_tuner, requisition, {})) == {"segment_isolation"}
}

test_resources_without_segment_are_in_the_default_segment if {
	unlabelled := {"kind": "mcp.tool", "id": "erp/purchasing/quote", "attributes": {"trust_domain": "prod"}}
	allowed(call(planner, unlabelled, {}))
	reasons(call(oven_tuner, unlabelled, {})) == {"segment_isolation"}
}

test_unknown_segment_is_unreachable if {
	lab := object.union(work_orders, {"attributes": {"segment": "lab"}})
	reasons(call(scheduler, lab, {})) == {"segment_isolation"}
}

test_agent_without_segment_reaches_nothing if {
	nowhere := json.remove(planner, ["attributes/segment"])
	reasons(call(nowhere, requisition, {})) == {"segment_isolation"}
	reasons(call(nowhere, work_orders, {})) == {"segment_isolation"}
}

test_missing_segment_configuration_isolates_everything if {
	r := authz.deny with input as call(planner, work_orders, {}) with data.manufacturing as {}
	r == {"manufacturing_not_configured", "segment_isolation"}
}

# Physical writes need two named safety reviewers

test_physical_write_needs_two_safety_reviewers if {
	inp := setpoint(205)
	allowed(inp)
	obligations(inp) == two_reviewers
}

test_physical_write_obligation_does_not_depend_on_approvals if {
	obligations(approved_by(setpoint(205), [maria, tomas])) == two_reviewers
	allowed(approved_by(setpoint(205), [maria, tomas]))
	allowed(approved_by(setpoint(205), [maria, maria]))
}

test_physical_reads_need_no_approval if {
	obligations(call(oven_tuner, read_temperature, {})) == {}
	read_tags := {"agent": oven_tuner, "action": "resources/read", "resource": {"kind": "mcp.resource", "id": "plc/line-3/oven/tags", "attributes": {"segment": "ics", "physical": true}}, "args": {}, "context": context}
	allowed(read_tags)
	obligations(read_tags) == {}
}

test_non_physical_writes_need_no_approval if {
	update := {"kind": "mcp.tool", "id": "mes/work_orders/update", "attributes": {"segment": "mes"}}
	inp := call(scheduler, update, {"order": "WO-5531", "status": "scheduled"})
	allowed(inp)
	obligations(inp) == {}
}

test_approval_by_unlisted_reviewer_denied if {
	stranger := {"by": "kevin.brandt", "role": "safety-reviewer"}
	reasons(approved_by(setpoint(205), [maria, stranger])) == {"unlisted_safety_reviewer"}
}

test_approval_without_approver_denied if {
	reasons(approved_by(setpoint(205), [maria, {"role": "safety-reviewer"}])) == {"unlisted_safety_reviewer"}
}

test_approvals_in_other_roles_are_ignored if {
	shift_lead := {"by": "kevin.brandt", "role": "shift-lead"}
	allowed(approved_by(setpoint(205), [maria, shift_lead]))
}

test_approvals_on_other_actions_are_ignored if {
	stranger := {"by": "kevin.brandt", "role": "safety-reviewer"}
	allowed(approved_by(call(oven_tuner, read_temperature, {}), [stranger]))
}

test_owner_cannot_approve if {
	owned := object.union(setpoint(205), {"agent": {"owner": "tomas.novak@plant.example"}})
	reasons(approved_by(owned, [maria, tomas])) == {"approval_by_agent_owner"}
	allowed(approved_by(owned, [maria, {"by": "ai-agent://prod/plant-berlin/safety-monitor", "kind": "agent", "role": "safety-reviewer"}]))
}

# Safe ranges

test_setpoint_within_range if {
	allowed(setpoint(150))
	allowed(setpoint(230))
	allowed(setpoint(187.5))
}

test_setpoint_out_of_range if {
	reasons(setpoint(149)) == {"setpoint_out_of_range"}
	reasons(setpoint(231)) == {"setpoint_out_of_range"}
	reasons(setpoint(-40)) == {"setpoint_out_of_range"}
}

test_setpoint_must_be_a_number if {
	reasons(setpoint("205")) == {"setpoint_out_of_range"}
	reasons(call(oven_tuner, set_temperature, {"fahrenheit": 400})) == {"setpoint_out_of_range"}
}

test_physical_write_without_safe_range if {
	start := {"kind": "mcp.tool", "id": "plc/line-3/press/start_cycle", "attributes": {"segment": "ics", "physical": true}}
	inp := call(oven_tuner, start, {"recipe": "R-17"})
	allowed(inp)
	obligations(inp) == two_reviewers
}

# Guardrails in this bundle

test_restricted_tuner_reads_but_cannot_write if {
	restricted := object.union(oven_tuner, {"status": "restricted"})
	allowed(call(restricted, read_temperature, {}))
	reasons(call(restricted, set_temperature, {"celsius": 205})) == {"agent_restricted_read_only"}
}

test_risk_threshold_is_lower_here if {
	reasons(object.union(setpoint(205), {"context": {"risk": {"score": 80, "level": "high"}}})) == {"risk_too_high", "risk_read_only"}
}

test_medium_risk_writes_nothing_here if {
	reasons(object.union(setpoint(205), {"context": {"risk": {"score": 30, "level": "medium"}}})) == {"risk_read_only"}
	allowed(object.union(call(oven_tuner, read_temperature, {}), {"context": {"risk": {"score": 30, "level": "medium"}}}))
}

test_stale_risk_stops_everything_here if {
	reasons(object.union(call(oven_tuner, read_temperature, {}), {"context": {"risk": {"score": 0, "level": "low", "stale": true}}})) == {"risk_unknown"}
}

test_planner_cannot_email_from_a_tainted_session if {
	email := {"kind": "mcp.tool", "id": "email/send", "attributes": {"segment": "it", "external": true}}
	inp := call(planner, email, {"to": "sales@supplier.example", "subject": "Spare heating elements"})
	allowed(inp)
	reasons(object.union(inp, {"context": {"session": {"taints": ["untrusted_content"]}}})) == {"tainted_session_egress"}
}

test_missing_reviewer_list_refuses_every_approval if {
	r := authz.deny with input as approved_by(setpoint(205), [maria, tomas])
		with data.manufacturing.safety_approval as object.remove(data.manufacturing.safety_approval, ["reviewers"])
	r == {"manufacturing_not_configured", "unlisted_safety_reviewer"}
}

test_missing_configuration_denies_everything if {
	r := authz.deny with input as call(oven_tuner, read_temperature, {})
		with data.manufacturing as object.remove(data.manufacturing, ["safety_approval"])
	r == {"manufacturing_not_configured"}
	authz.configured
}
