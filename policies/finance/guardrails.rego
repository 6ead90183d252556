# Guardrails: the deny rules every Warden bundle shares.
#
# This file is the one copy: the other shipped bundles link to it. Each
# bundle's warden.authz pulls the reasons in with
#
#	deny contains reason if some reason in guardrails.deny
#
# Data it reads (every bundle's data.json must define all of them, or every
# action is denied with "guardrails_not_configured"):
#
#	cross_domain          [{"from", "to", "actions"}]: trust domain crossings allowed
#	pii_roles             roles that may touch resources with attribute pii: true
#	risk.deny_at          a risk score at or above it is denied
#	risk.deny_levels      risk levels that are denied, e.g. ["critical"]
#	risk.read_only_levels (optional) risk levels at which the agent may only read
#	risk.deny_when_stale  (optional) true denies every action while the monitor is behind
#	read_actions          the actions that only read (what restricted agents may do)
#	egress_taints         session taints that forbid egress to external resources
#	provenance            (optional) {"mode": "provenance" or "taint", "target_args": [...],
#	                      "approve": bool, "approval": {require_approvals rule},
#	                      "amount_args": [...], "approval_amount": number}:
#	                      with "provenance" (the default), where the enforcement point says
#	                      where arguments came from, the finer rules below replace the
#	                      session-taint rule; "taint" keeps the session-taint rule alone
#	max_delegation_depth  how many actors a delegation chain may have
package warden.guardrails

# The statuses an agent record can have.
statuses := {"active", "restricted", "quarantined", "disabled"}

# A quarantined or disabled agent does nothing. (The decision pipeline
# refuses their tokens too; this holds when a status changed after that.)
deny contains "agent_quarantined" if input.agent.status == "quarantined"

deny contains "agent_disabled" if input.agent.status == "disabled"

# Fail closed on a status this policy does not know, or none.
deny contains "agent_status_unknown" if not agent_status in statuses

# A restricted agent may only read.
deny contains "agent_restricted_read_only" if {
	input.agent.status == "restricted"
	not is_read
}

# Crossing a trust domain needs an explicit allow in data.cross_domain.
deny contains "cross_trust_domain" if {
	target := input.resource.attributes.trust_domain
	target != agent_trust_domain
	not cross_domain_allowed(agent_trust_domain, target, action)
}

# Resources that hold personal data are for the roles in data.pii_roles.
deny contains "pii_not_permitted" if {
	input.resource.attributes.pii == true
	not pii_role
}

# The monitor's live risk score (or level) is too high to act at all.
deny contains "risk_too_high" if input.context.risk.score >= data.risk.deny_at

deny contains "risk_too_high" if input.context.risk.level in data.risk.deny_levels

# At a raised risk level the agent may still read, but change nothing.
deny contains "risk_read_only" if {
	input.context.risk.level in data.risk.read_only_levels
	not is_read
}

# The monitor is behind the audit log: the risk above may miss the latest
# behaviour. A bundle that would rather stop than act on it says so.
deny contains "risk_unknown" if {
	input.context.risk.stale == true
	data.risk.deny_when_stale == true
}

# Once a session has read untrusted content (a web page, an inbound email),
# nothing in it may reach outside: a prompt injection must not exfiltrate.
# The blunt rule: where the enforcement point does not say where arguments
# came from, or the bundle keeps it (provenance.mode "taint").
deny contains "tainted_session_egress" if {
	sends_out
	not provenance_rules
	some taint in input.context.session.taints
	taint in data.egress_taints
}

# The finer rules, on where each argument came from
# (input.context.provenance): a read of untrusted content may still inform
# what the agent does for the user, but an injected instruction's values
# may not steer it.
#
# The recipient, destination or target of an action that sends data out, or
# destroys it, must not come only from untrusted content.
deny contains "target_from_untrusted_content" if {
	provenance_rules
	sends_out_or_destroys
	some path in input.context.provenance.untrusted
	target_arg(path)
}

# An action that changes something, all of whose arguments come only from
# untrusted content, is the injected content's action, not the user's: a
# person judges it (needs_approval), or, in a bundle that wants no
# approvals (provenance.approve false), it is refused.
deny contains "arguments_from_untrusted_content" if {
	all_args_untrusted
	not approve_untrusted
}

# Every argument with a value was read only in untrusted content, or
# nowhere: an argument with a value nobody can place does not make the
# others the user's.
all_args_untrusted if {
	provenance_rules
	is_write
	untrusted := count(input.context.provenance.untrusted)
	untrusted > 0
	untrusted + count(input.context.provenance.unknown) == input.context.provenance.arguments
}

# What injected content may have steered waits for a person
# (provenance.approval, default one person): a write whose every argument
# came only from untrusted content; an amount (provenance.amount_args) that
# came only from untrusted content, at or above provenance.approval_amount.
# A bundle's policy turns this into its require_approvals obligation.
needs_approval if {
	all_args_untrusted
	approve_untrusted
}

needs_approval if {
	provenance_rules
	approve_untrusted
	is_number(data.provenance.approval_amount)
	some path in input.context.provenance.untrusted
	some word in path_words(path)
	word in amount_args
	amount_value(path) >= data.provenance.approval_amount
}

# The number at an argument's path: list indexes as numbers, a number
# written as a string read as one.
amount_value(path) := n if {
	keys := [k | some part in split(path, "."); k := path_key(part)]
	v := object.get(input.args, keys, null)
	n := as_number(v)
}

path_key(part) := to_number(part) if regex.match(`^[0-9]+$`, part)

path_key(part) := part if not regex.match(`^[0-9]+$`, part)

as_number(v) := v if is_number(v)

as_number(v) := to_number(trim_space(v)) if {
	is_string(v)
	regex.match(`^\s*[0-9]+(\.[0-9]+)?\s*$`, v)
}

default approval_rule := {"count": 1, "humans": 1}

approval_rule := data.provenance.approval if is_object(data.provenance.approval)

default approve_untrusted := true

approve_untrusted := data.provenance.approve if is_boolean(data.provenance.approve)

default amount_args := {"amount", "total", "sum"}

amount_args := {a | some a in data.provenance.amount_args} if is_array(data.provenance.amount_args)

# A target read nowhere (in a form the extractor does not know, in a read
# forgotten to keep memory bounded, in content no enforcement point saw),
# once the agent has read untrusted content: it may be the untrusted
# content's. A target must come from the user or a trusted source then.
deny contains "target_from_unknown_source" if {
	provenance_rules
	sends_out_or_destroys
	some taint in input.context.session.taints
	taint in data.egress_taints
	some path in input.context.provenance.unknown
	target_arg(path)
}

sends_out_or_destroys if sends_out

sends_out_or_destroys if input.resource.attributes.destructive == true

provenance_rules if {
	input.context.provenance.known == true
	provenance_mode == "provenance"
}

default provenance_mode := "provenance"

provenance_mode := data.provenance.mode

# An argument that names where data goes or what is acted on: a word of a
# segment of its path (split at '.', '_' and '-', in lower case) is one of
# the target words ("to", "recipient_email", "Payment.IBAN").
target_arg(path) if {
	some word in path_words(path)
	word in target_args
}

# The words of an argument's path, in lower case: split at '.', '_', '-'.
path_words(path) := split(replace(replace(lower(path), "_", "."), "-", "."), ".")

default target_args := {"to", "cc", "bcc", "recipient", "recipients", "email", "address", "iban", "account", "url", "uri", "destination",
	"host", "domain", "phone", "number", "path", "file", "filename", "channel", "webhook"}

target_args := {a | some a in data.provenance.target_args} if is_array(data.provenance.target_args)

# A resource sends data out when the catalog marks it external, or an
# enforcement point's tool catalog marks it egress (the MCP gateway's
# "egress: true").
sends_out if input.resource.attributes.external == true

sends_out if input.resource.attributes.egress == true

# A delegation chain longer than allowed.
deny contains "delegation_too_deep" if count(input.context.delegation) > data.max_delegation_depth

# Missing configuration must not silently switch a guardrail off.
deny contains "guardrails_not_configured" if not configured

configured if {
	is_array(data.cross_domain)
	is_array(data.pii_roles)
	is_number(data.risk.deny_at)
	is_array(data.risk.deny_levels)
	is_array(data.read_actions)
	is_array(data.egress_taints)
	is_number(data.max_delegation_depth)
}

# Input fields that negated expressions use: a function call or a membership
# test on an undefined value is undefined, and so is its negation, so they
# get a value here that cannot match anything instead.
default agent_status := ""

agent_status := input.agent.status

default agent_trust_domain := ""

agent_trust_domain := input.agent.trust_domain

default action := ""

action := input.action

cross_domain_allowed(from, to, action) if {
	some crossing in data.cross_domain
	crossing.from == from
	crossing.to == to
	action in crossing.actions
}

pii_role if {
	some role in input.agent.roles
	role in data.pii_roles
}

# An action reads when it is a read action, or when it calls a tool the
# catalog marks read_only (declare read_only in the catalog, which wins over
# what an enforcement point sends).
is_read if action in data.read_actions

is_read if {
	action == "tools/call"
	input.resource.attributes.read_only == true
}

is_write if not is_read
