# RBAC: least privilege from the role table in data.permissions. Shared by
# the shipped bundles (the others link to this file).
#
#	"permissions": {
#	  "<role>": [{"actions": ["tools/call"], "kind": "mcp.tool", "ids": ["tickets/get", "kb/*"]}]
#	}
#
# An id ending in "*" matches every id that starts with what precedes it;
# any other id matches only itself. Nothing is permitted that no grant of
# one of the agent's roles names.
package warden.rbac

permitted if {
	some grant in grants
	input.action in grant.actions
	grant.kind == input.resource.kind
	some pattern in grant.ids
	id_matches(pattern, input.resource.id)
}

# The grants of the agent's roles.
grants contains grant if {
	some role in input.agent.roles
	some grant in data.permissions[role]
}

id_matches(pattern, id) if pattern == id

id_matches(pattern, id) if {
	endswith(pattern, "*")
	startswith(id, trim_suffix(pattern, "*"))
}
