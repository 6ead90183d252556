package warden.authz

allow if input.level > 2

ratio := input.a / input.b

level_name := "high" if input.level > 2

level_name := "low" if input.level > 0
