# The playbook: what Warden does by itself when an agent's risk rises
# (docs/monitoring.md). The responder evaluates it on every alert (an event
# that fired signals) with input
#
#	agent     {"id", "trust_domain", "roles", "owner", "status"}
#	risk      {"score", "level", "signals", "learning", "stale"}
#	fired     the signals this event fired
#	event     {"audit_index", "action", "resource", "outcome", "reasons"}
#	incident  {"open", "id", "actions" in force, "level"}
#
# and does each action not already in force: alert (open or extend the
# agent's incident), step_up (tokens of a minute, a DPoP proof on every
# request, its tokens revoked so it authenticates again), restrict,
# quarantine, revoke_tokens, disable. An action with "expires" ends by
# itself; without, a person releases it (a step-up always ends, after an
# hour by default).
#
# Graduated: medium risk is alerted and the agent stepped up for an hour;
# high restricts it to reading for an hour; critical quarantines it and
# revokes its tokens until a person looks. Two signals need no score to act on: egress from a
# tainted session together with another signal, and refused credentials
# from an agent already probing.
package warden.response

actions contains {"action": "alert"} if input.risk.level in {"medium", "high", "critical"}

actions contains {"action": "step_up", "expires": "1h", "reason": "risk raised"} if input.risk.level in {"medium", "high"}

actions contains {"action": "restrict", "expires": "1h", "reason": "risk high"} if input.risk.level == "high"

actions contains {"action": "quarantine", "reason": "risk critical"} if input.risk.level == "critical"

actions contains {"action": "revoke_tokens", "reason": "risk critical"} if input.risk.level == "critical"

# A prompt-injected agent trying to send out what it read, while anything
# else is odd about it: stop it before the score says so.
actions contains {"action": "quarantine", "reason": "egress from a tainted session, with other signals"} if {
	"tainted_egress" in input.fired
	count(input.risk.signals) >= 2
}

# Refused credentials and denials together: someone is trying a key or a
# token that is not theirs.
actions contains {"action": "revoke_tokens", "reason": "refused credentials while probing"} if {
	"auth_failures" in input.fired
	"deny_burst" in input.risk.signals
}
