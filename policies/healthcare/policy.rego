# Healthcare: the shared guardrails and least privilege, plus
#
#   - department fences: an agent with a department role (a
#     radiology-assistant, say) reaches only its department's data
#     (resource attribute department);
#   - sealed departments (oncology) are unreachable for every agent;
#   - minimum necessary: a read of a record with personal data carries a
#     redact obligation, the fields the agent's roles do not need
#     (data.healthcare.minimum_necessary, by the resource's record_type).
package warden.authz

import data.warden.guardrails
import data.warden.rbac

default allow := false

# Allowed only what one of the agent's roles is granted (data.permissions).
allow if rbac.permitted

deny contains reason if some reason in guardrails.deny

# What untrusted content may have steered waits for a person.
obligations["require_approvals"] := guardrails.approval_rule if guardrails.needs_approval

# Missing configuration must not silently switch a fence off.
deny contains "healthcare_not_configured" if not configured

deny contains "outside_department" if {
	count(agent_departments) > 0
	not resource_department in agent_departments
}

deny contains "department_sealed" if resource_department in data.healthcare.sealed_departments

# One patient, one study: a tool that reaches a patient's records
# (data.healthcare.patient_tools) runs only under a task grant that covers
# the call, for that patient (grants.rego gives them). The grant ends with
# its study.
deny contains "no_grant_for_this_patient" if {
	input.resource.id in data.healthcare.patient_tools
	not granted
}

granted if {
	some g in input.context.grants
	g.matches
}

# A read of many patients at once (an export) waits while the monitor sees
# the agent's risk raised: exfiltration looks like that.
deny contains "bulk_read_at_risk" if {
	input.resource.attributes.bulk == true
	input.context.risk.level in data.healthcare.bulk_read_blocked_levels
}

# Personal data is read only under a minimum necessary rule.
deny contains "minimum_necessary_undefined" if {
	input.resource.attributes.pii == true
	guardrails.is_read
	not record_rule
}

obligations["redact"] := sort(redactions) if {
	guardrails.is_read
	count(redactions) > 0
}

configured if {
	is_array(data.healthcare.bulk_read_blocked_levels)
	is_object(data.healthcare.department_roles)
	is_array(data.healthcare.sealed_departments)
	is_object(data.healthcare.minimum_necessary)
}

# The departments of the agent's department roles.
agent_departments contains department if {
	some role in input.agent.roles
	department := data.healthcare.department_roles[role]
}

default resource_department := ""

resource_department := input.resource.attributes.department

# The minimum necessary rule for the resource's kind of record.
record_rule := data.healthcare.minimum_necessary[input.resource.attributes.record_type]

# The fields each of the agent's roles must not see, when the rule names the role.
role_redactions contains {field | some field in fields} if {
	some role in input.agent.roles
	fields := record_rule.roles[role]
}

# An agent sees what any of its roles may see: it gets only the redactions
# all its named roles share. An agent none of whose roles is named gets
# the rule's default.
redactions := intersection(role_redactions) if count(role_redactions) > 0

redactions := {field | some field in record_rule.default} if count(role_redactions) == 0
