package warden.authz

test_high_level_allowed if allow with input as {"level": 3}

# Fails: the rule is undefined.
test_low_level_allowed if allow with input as {"level": 1}

# Fails: false.
test_wrong_expectation if {
	allow with input as {"level": 5}
	false
}

# An error: division by zero.
test_ratio_errors if ratio == 1 with input as {"a": 1, "b": 0}

todo_test_unwritten if true

# An error: two values for one complete rule.
test_conflict_errors if level_name == "high" with input as {"level": 3}
