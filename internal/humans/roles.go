package humans

import (
	"fmt"
	"slices"
	"sort"
)

// Permission is what one admin endpoint needs.
type Permission string

// The permissions, one per kind of administrative act.
const (
	AgentsRead         Permission = "agents.read"
	AgentsWrite        Permission = "agents.write"    // enable, disable, quarantine, restrict, revoke tokens
	AgentsRegister     Permission = "agents.register" // register agents, replace their keys: who they are
	KeysRead           Permission = "keys.read"
	KeysRotate         Permission = "keys.rotate"
	EventsRead         Permission = "events.read"
	TaintsRead         Permission = "taints.read"
	TaintsWrite        Permission = "taints.write"
	MonitorRead        Permission = "monitor.read" // risk, monitor status
	MonitorWrite       Permission = "monitor.write"
	IncidentsRead      Permission = "incidents.read"
	IncidentsWrite     Permission = "incidents.write"
	PoliciesRead       Permission = "policies.read"
	PoliciesPush       Permission = "policies.push" // push, shadow
	PoliciesActivate   Permission = "policies.activate"
	EnforcementRead    Permission = "enforcement.read"
	EnforcementWrite   Permission = "enforcement.write"
	AuditRead          Permission = "audit.read" // entries, checkpoints, proofs
	AuditExport        Permission = "audit.export"
	ApprovalsRead      Permission = "approvals.read"
	ApprovalsVote      Permission = "approvals.vote"
	GrantsRead         Permission = "grants.read"
	GrantsWrite        Permission = "grants.write" // ask for, revoke, complete
	Decide             Permission = "decide"       // ask for decisions as an enforcement point would
	AdministerAccess   Permission = "access.admin"
	SessionPermissions Permission = "session" // sign out, who am I: every signed-in person
)

// AllPermissions lists every permission.
var AllPermissions = []Permission{AgentsRead, AgentsWrite, AgentsRegister, KeysRead, KeysRotate, EventsRead, TaintsRead, TaintsWrite, MonitorRead,
	MonitorWrite, IncidentsRead, IncidentsWrite, PoliciesRead, PoliciesPush, PoliciesActivate, EnforcementRead, EnforcementWrite,
	AuditRead, AuditExport, ApprovalsRead, ApprovalsVote, GrantsRead, GrantsWrite, Decide, AdministerAccess}

// reads is what every role may look at.
var reads = []Permission{AgentsRead, KeysRead, TaintsRead, MonitorRead, IncidentsRead, PoliciesRead, EnforcementRead, ApprovalsRead, GrantsRead}

// BuiltinRoles are the roles Warden knows; a configuration adds its own.
var BuiltinRoles = map[string][]Permission{
	"admin":         AllPermissions,
	"policy-author": append(slices.Clone(reads), PoliciesPush, PoliciesActivate),
	"approver":      append(slices.Clone(reads), ApprovalsVote),
	"auditor":       append(slices.Clone(reads), EventsRead, AuditRead, AuditExport),
	"viewer":        slices.Clone(reads),
	"operator":      append(slices.Clone(reads), AgentsWrite, TaintsWrite, IncidentsWrite, MonitorWrite, EventsRead, GrantsWrite),
}

// Roles resolves role names to permissions: the built-in roles and the
// configured ones.
type Roles map[string][]Permission

// NewRoles checks custom (role name → permission names) and returns the
// roles in force: the built-in ones and these.
func NewRoles(custom map[string][]string) (Roles, error) {
	r := Roles{}
	for name, ps := range BuiltinRoles {
		r[name] = ps
	}
	names := make([]string, 0, len(custom))
	for n := range custom {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := BuiltinRoles[name]; ok {
			return nil, fmt.Errorf("humans.roles: %q is a built-in role and cannot be redefined", name)
		}
		var ps []Permission
		for _, p := range custom[name] {
			if !slices.Contains(AllPermissions, Permission(p)) {
				return nil, fmt.Errorf("humans.roles.%s: unknown permission %q (known: %v)", name, p, AllPermissions)
			}
			ps = append(ps, Permission(p))
		}
		r[name] = ps
	}
	return r, nil
}

// Allows reports whether any of roles grants p.
func (r Roles) Allows(roles []string, p Permission) bool {
	if p == SessionPermissions {
		return true
	}
	for _, name := range roles {
		if slices.Contains(r[name], p) {
			return true
		}
	}
	return false
}

// Known reports whether name is a role.
func (r Roles) Known(name string) bool {
	_, ok := r[name]
	return ok
}
