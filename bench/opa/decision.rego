# The query Warden's engine asks of a bundle, as a module for opa run, so
# that OPA answers the same question: allow, deny and obligations in one
# evaluation. It must stay identical to engineModule in
# internal/policy/engine.go (a test checks).
package system.warden

allow := x if { x := data.warden.authz.allow } else := null
deny := x if { x := data.warden.authz.deny } else := null
obligations := x if { x := data.warden.authz.obligations } else := null

decision := {"allow": allow, "deny": deny, "obligations": obligations}
