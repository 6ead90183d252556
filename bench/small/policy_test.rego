package warden.authz_test

import data.warden.authz

test_a_quote if {
	authz.allow with input as {"action": "tools/call", "agent": {"roles": ["trader"]}, "resource": {"id": "market-data/get_quote"},
		"args": {"symbol": "ACME"}, "context": {"source": {"region": "eu-west"}}}
}

test_a_long_symbol if {
	"symbol_too_long" in authz.deny with input as {"args": {"symbol": "A-SYMBOL-LONGER-THAN-SIXTEEN"}, "context": {"source": {"region": "eu-west"}}}
}
