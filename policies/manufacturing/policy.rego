# Manufacturing: the shared guardrails and least privilege, plus
#
#   - network segment isolation: a resource in a segment is reachable only
#     from the agent segments data.manufacturing.segment_reach lists for it
#     (the ics segment only from ics); a resource without a segment is in
#     the default segment;
#   - a write to a physical system needs two of the named safety reviewers,
#     a person and an agent (obligation require_approvals), never approvals
#     by anyone else or by the agent's owner, and a setpoint within the
#     resource's safe range.
package warden.authz

import data.warden.guardrails
import data.warden.rbac

default allow := false

# Allowed only what one of the agent's roles is granted (data.permissions).
allow if rbac.permitted

deny contains reason if some reason in guardrails.deny

# What untrusted content may have steered waits for a person (a physical
# write waits for its safety reviewers already).
obligations["require_approvals"] := guardrails.approval_rule if {
	guardrails.needs_approval
	not physical_write
}

# Missing configuration must not silently switch a check off.
deny contains "manufacturing_not_configured" if not configured

# Segments

deny contains "segment_isolation" if not segment_reachable

# Physical writes

obligations["require_approvals"] := {
	"count": data.manufacturing.safety_approval.count,
	"roles": data.manufacturing.safety_approval.roles,
	"humans": data.manufacturing.safety_approval.humans,
	"agents": data.manufacturing.safety_approval.agents,
} if physical_write

# The engine counts distinct approvers in the roles (a person's roles come
# from their groups at the OpenID provider, an agent's from its
# registration); only the named reviewers (a person by email, an agent by
# id) may hold them.
deny contains "unlisted_safety_reviewer" if {
	some approval in safety_approvals
	not named_reviewer(approval)
}

# Four eyes: whoever answers for the agent does not approve its actions.
deny contains "approval_by_agent_owner" if {
	some approval in safety_approvals
	input.agent.owner in {approval.by, object.get(approval, "email", "")}
}

deny contains "setpoint_out_of_range" if {
	physical_write
	limits := input.resource.attributes.safe_range
	not within(limits)
}

# The agent's segment may reach the resource's.
segment_reachable if agent_segment in data.manufacturing.segment_reach[resource_segment]

configured if {
	is_string(data.manufacturing.default_segment)
	is_object(data.manufacturing.segment_reach)
	is_number(data.manufacturing.safety_approval.count)
	is_number(data.manufacturing.safety_approval.humans)
	is_number(data.manufacturing.safety_approval.agents)
	is_array(data.manufacturing.safety_approval.roles)
	is_array(data.manufacturing.safety_approval.reviewers)
}

default agent_segment := ""

agent_segment := input.agent.attributes.segment

resource_segment := input.resource.attributes.segment

resource_segment := data.manufacturing.default_segment if not input.resource.attributes.segment

physical_write if {
	input.resource.attributes.physical == true
	guardrails.is_write
}

# Approvals in a safety reviewer role, given for a physical write.
safety_approvals contains approval if {
	physical_write
	some approval in input.context.approvals
	approval.role in data.manufacturing.safety_approval.roles
}

named_reviewer(approval) if approval.by in data.manufacturing.safety_approval.reviewers

named_reviewer(approval) if approval.email in data.manufacturing.safety_approval.reviewers

# The setpoint argument the safe range names is a number within it.
within(limits) if {
	value := input.args[limits.arg]
	is_number(value)
	value >= limits.min
	value <= limits.max
}
