# The gateway benchmark's policy: agents with role bench may call the
# benchmark upstream's tools, and nothing else.
package warden.authz

default allow := false

allow if {
	input.action == "tools/call"
	"bench" in input.agent.roles
	startswith(input.resource.id, "bench/")
}
