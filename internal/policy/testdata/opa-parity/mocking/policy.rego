package warden.authz

import rego.v1

allow if {
	data.limits[input.agent.id] >= input.args.amount
	not blocked
}

blocked if input.args.counterparty in data.blocked
