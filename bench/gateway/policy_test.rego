package warden.authz_test

import data.warden.authz

test_bench_agent_calls_bench_tools if {
	authz.allow with input as {"action": "tools/call", "agent": {"roles": ["bench"]}, "resource": {"id": "bench/echo"}}
}

test_nothing_else if {
	not authz.allow with input as {"action": "tools/call", "agent": {"roles": ["bench"]}, "resource": {"id": "other/echo"}}
	not authz.allow with input as {"action": "tools/call", "agent": {"roles": ["reader"]}, "resource": {"id": "bench/echo"}}
}
