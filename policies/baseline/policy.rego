# Baseline: deny by default, least privilege from the role table, and the
# shared guardrails. The starting point for an organisation's own bundle.
package warden.authz

import data.warden.guardrails
import data.warden.rbac

default allow := false

# Allowed only what one of the agent's roles is granted (data.permissions).
allow if rbac.permitted

# Whatever is granted, the guardrails still deny.
deny contains reason if some reason in guardrails.deny

# What untrusted content may have steered waits for a person.
obligations["require_approvals"] := guardrails.approval_rule if guardrails.needs_approval
