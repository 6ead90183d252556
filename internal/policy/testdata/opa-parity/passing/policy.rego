package warden.authz

default allow := false

allow if {
	input.action == "read"
	input.agent.roles[_] in data.readers
}

deny contains "night" if input.context.hour < 6
