# Task grants in finance: a trader asks for a higher notional limit for a
# while (up to data.finance.max_temporary_notional, at most an hour); one
# risk officer, a person, approves it. Nothing else is grantable.
package warden.grants

default decision := {"outcome": "deny", "reasons": ["not_grantable"]}

decision := {
	"outcome": "approval",
	"require_approvals": {"count": 1, "roles": ["risk-officer"], "humans": 1},
	"max_lifetime": "1h",
} if {
	"trader" in input.agent.roles
	input.grant.actions == ["raise_limit"]
	input.grant.resources == ["finance/notional_limit"]
	object.keys(input.grant.constraints) == {"max_notional"}
	is_number(input.grant.constraints.max_notional)
	input.grant.constraints.max_notional > 0
	input.grant.constraints.max_notional <= data.finance.max_temporary_notional
}
