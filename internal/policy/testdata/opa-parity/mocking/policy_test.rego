package warden.authz_test

import data.warden.authz

test_within_limit if authz.allow with input as {"agent": {"id": "a"}, "args": {"amount": 5, "counterparty": "x"}}
	with data.limits as {"a": 10}
	with data.blocked as []

test_blocked_counterparty if not authz.allow with input as {"agent": {"id": "a"}, "args": {"amount": 5, "counterparty": "x"}}
	with data.limits as {"a": 10}
	with data.blocked as ["x"]

test_mocked_rule if authz.allow with authz.blocked as false
	with input as {"agent": {"id": "a"}, "args": {"amount": 1}}
	with data.limits as {"a": 1}

# Fails: over the limit.
test_over_limit if authz.allow with input as {"agent": {"id": "a"}, "args": {"amount": 50, "counterparty": "y"}}
	with data.limits as {"a": 10}
	with data.blocked as []
