# Task grants in healthcare: a radiology assistant is given one patient's
# imaging studies for one study (a task), at once, for at most an hour.
# Nothing else is grantable: every other request is refused.
package warden.grants

default decision := {"outcome": "deny", "reasons": ["not_grantable"]}

decision := {"outcome": "grant", "max_lifetime": "1h"} if {
	"radiology-assistant" in input.agent.roles
	input.grant.task != ""
	input.grant.actions == ["tools/call"]
	input.grant.resources == ["pacs/radiology/query_studies"]
	object.keys(input.grant.constraints) == {"patient_id"}
	is_string(input.grant.constraints.patient_id)
}
