package warden.authz_test

import data.warden.authz

test_reader_reads if authz.allow with input as {"action": "read", "agent": {"roles": ["analyst"]}}

test_writer_cannot_read if not authz.allow with input as {"action": "read", "agent": {"roles": ["writer"]}}

test_night_is_denied if "night" in authz.deny with input as {"context": {"hour": 3}}

todo_test_later if false
