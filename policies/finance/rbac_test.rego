# Unit tests of the shared RBAC library, on a role table of their own.
package warden.rbac_test

import data.warden.rbac

permissions := {
	"support-agent": [
		{"actions": ["tools/list", "tools/call"], "kind": "mcp.tool", "ids": ["tickets/get", "kb/*"]},
		{"actions": ["resources/read"], "kind": "mcp.resource", "ids": ["kb/articles/*"]},
	],
	"crm-reader": [{"actions": ["tools/call"], "kind": "mcp.tool", "ids": ["crm/lookup_customer"]}],
	"auditor": [{"actions": ["db:select"], "kind": "db.table", "ids": ["*"]}],
}

request(roles, action, kind, id) := {
	"agent": {"id": "ai-agent://prod/support/ticket-triage", "roles": roles, "status": "active"},
	"action": action,
	"resource": {"kind": kind, "id": id, "attributes": {}},
}

permitted(inp) if {
	rbac.permitted with input as inp with data.permissions as permissions
}

test_exact_id if {
	permitted(request(["support-agent"], "tools/call", "mcp.tool", "tickets/get"))
}

test_exact_id_does_not_match_longer_ids if {
	not permitted(request(["support-agent"], "tools/call", "mcp.tool", "tickets/get_all"))
}

test_prefix_pattern if {
	permitted(request(["support-agent"], "tools/call", "mcp.tool", "kb/search"))
	permitted(request(["support-agent"], "resources/read", "mcp.resource", "kb/articles/reset-password"))
}

test_prefix_pattern_needs_the_prefix if {
	not permitted(request(["support-agent"], "tools/call", "mcp.tool", "kbx/search"))
	not permitted(request(["support-agent"], "tools/call", "mcp.tool", "kb"))
}

test_star_matches_every_id_of_its_kind if {
	permitted(request(["auditor"], "db:select", "db.table", "orders/open"))
	not permitted(request(["auditor"], "db:select", "db.view", "orders/open"))
}

test_action_must_be_granted if {
	not permitted(request(["support-agent"], "resources/read", "mcp.tool", "tickets/get"))
	not permitted(request(["auditor"], "db:delete", "db.table", "orders/open"))
}

test_kind_must_match if {
	not permitted(request(["support-agent"], "tools/call", "mcp.resource", "tickets/get"))
}

test_any_role_may_grant if {
	permitted(request(["support-agent", "crm-reader"], "tools/call", "mcp.tool", "crm/lookup_customer"))
	not permitted(request(["support-agent"], "tools/call", "mcp.tool", "crm/lookup_customer"))
}

test_unknown_role_grants_nothing if {
	not permitted(request(["intern"], "tools/call", "mcp.tool", "tickets/get"))
	not permitted(request([], "tools/call", "mcp.tool", "tickets/get"))
}

test_grants_are_those_of_the_roles if {
	g := rbac.grants with input as request(["crm-reader"], "tools/call", "mcp.tool", "x")
		with data.permissions as permissions
	g == {{"actions": ["tools/call"], "kind": "mcp.tool", "ids": ["crm/lookup_customer"]}}
}

test_id_matches if {
	rbac.id_matches("a/b", "a/b")
	rbac.id_matches("a/*", "a/b/c")
	rbac.id_matches("a/*", "a/")
	rbac.id_matches("*", "")
	not rbac.id_matches("a/b", "a/c")
	not rbac.id_matches("a/*", "a")
}
