package store

import (
	"context"
	"encoding/json"
	"time"
)

// Taint records that content an agent must not trust entered its context:
// an action on an untrusted source (an upstream, a route, a catalog entry
// marked trust: untrusted) was allowed, or policy named a taint in its
// obligations. It lasts until an operator clears it or, when the
// deployment says so, until some time after the last such read.
type Taint struct {
	// AgentID is the agent whose context holds the content: the token's
	// presenter, which for a delegated token is the current actor.
	AgentID string `json:"agent"`
	// Task is the task the token was bound to by a trusted party, "" for
	// the agent as a whole.
	Task string `json:"task,omitempty"`
	// Name is the taint, such as "untrusted_content".
	Name string `json:"taint"`
	// The decision that allowed the first read, where it was made and on
	// what; AuditIndex is its entry in the log (-1 until it is known).
	DecisionID       string    `json:"decision_id"`
	AuditIndex       int64     `json:"audit_index"`
	EnforcementPoint string    `json:"enforcement_point"`
	Action           string    `json:"action"`
	ResourceKind     string    `json:"resource_kind"`
	ResourceID       string    `json:"resource_id"`
	CreatedAt        time.Time `json:"created_at"`
	// LastReadAt is the latest read the store knows of that would have
	// set the taint.
	LastReadAt time.Time `json:"last_read_at"`
}

// TaintSelection names taints to clear: an agent's, in one task's scope
// or, with AnyTask, in every scope.
type TaintSelection struct {
	AgentID string
	Task    string
	AnyTask bool
}

// TaintStore keeps the agents' taints, shared by every replica. Creating
// and removing taints announces ChangeTaint (Key: the agent) on the change
// feed; removals record Events in the same transaction.
type TaintStore interface {
	// AddTaint records t. When the agent already holds the taint in that
	// scope, only LastReadAt moves, and only forward; unless that taint was
	// last read before renewBefore (its time was up, but it was not swept
	// yet), when t replaces it as a new taint. It reports whether the taint
	// was created.
	AddTaint(ctx context.Context, t Taint, renewBefore time.Time) (created bool, err error)
	// SetTaintIndex records the audit index of the decision that created
	// a taint, once it is known.
	SetTaintIndex(ctx context.Context, t Taint, index int64) error
	// Taints lists the taints of agent, or of every agent when agent is "".
	Taints(ctx context.Context, agent string) ([]Taint, error)
	// ClearTaints removes the selected taints, recording ev (its Detail is
	// filled with what was removed) when there were any, and returns them.
	ClearTaints(ctx context.Context, sel TaintSelection, ev Event) ([]Taint, error)
	// ExpireTaints removes every taint last read before before, recording
	// ev for each agent that held some, and returns them.
	ExpireTaints(ctx context.Context, before time.Time, ev Event) ([]Taint, error)
}

// TaintEvent is ev about taints removed from one agent: its Target is the
// agent, and its Detail lists them (and keeps what ev's Detail said, such
// as an operator's reason, under "detail").
func TaintEvent(ev Event, gone []Taint) Event {
	if len(gone) > 0 {
		ev.Target = gone[0].AgentID
	}
	d := map[string]any{"taints": gone}
	if len(ev.Detail) > 0 {
		d["detail"] = ev.Detail
	}
	ev.Detail, _ = json.Marshal(d)
	return ev
}

// TaintsByAgent groups taints by agent, in the order they came.
func TaintsByAgent(ts []Taint) [][]Taint {
	var out [][]Taint
	at := map[string]int{}
	for _, t := range ts {
		i, ok := at[t.AgentID]
		if !ok {
			i = len(out)
			at[t.AgentID] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], t)
	}
	return out
}
