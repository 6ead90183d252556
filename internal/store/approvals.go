package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// ApprovalStatus is where an approval request stands. Pending and approved
// requests are live: at most one per digest.
type ApprovalStatus string

// Approval statuses.
const (
	ApprovalPending  ApprovalStatus = "pending"
	ApprovalApproved ApprovalStatus = "approved"
	ApprovalRejected ApprovalStatus = "rejected"
	ApprovalExpired  ApprovalStatus = "expired"
	ApprovalConsumed ApprovalStatus = "consumed"
)

// Valid reports whether s is one of the known statuses.
func (s ApprovalStatus) Valid() bool {
	switch s {
	case ApprovalPending, ApprovalApproved, ApprovalRejected, ApprovalExpired, ApprovalConsumed:
		return true
	}
	return false
}

// Live reports whether a request in status s can still be approved or
// consumed.
func (s ApprovalStatus) Live() bool { return s == ApprovalPending || s == ApprovalApproved }

// ApprovalRule is what a request needs before it runs: the policy's
// require_approvals obligation.
type ApprovalRule struct {
	// Count is the number of distinct approvers needed.
	Count int `json:"count"`
	// Roles, when set, are the roles an approver (human or agent) must
	// hold one of; Approvers, when set, the only principals who may.
	Roles     []string `json:"roles,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	// Humans and Agents are the least numbers of each among the approvers.
	Humans int `json:"humans,omitempty"`
	Agents int `json:"agents,omitempty"`
	// ExcludeOwner refuses approvers who share the requesting agent's owner.
	ExcludeOwner bool `json:"exclude_owner,omitempty"`
	// Rejections is the number of rejections that reject the request.
	Rejections int `json:"rejections"`
	// TTL is how long the request may wait, and an approval be used.
	TTL time.Duration `json:"ttl"`
}

// ApprovalResource is the resource of the action an approval is for.
type ApprovalResource struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Approver kinds. The bootstrap token is no one in particular: its vote
// counts toward a rule's count, never toward its people.
const (
	ApproverHuman     = "human"
	ApproverAgent     = "agent"
	ApproverBootstrap = "bootstrap"
)

// ApprovalVote is one approver's approval or rejection.
type ApprovalVote struct {
	By string `json:"by"`
	// Email is a person's, as the provider gave it at sign-in.
	Email string `json:"email,omitempty"`
	// Kind is human or agent.
	Kind  string   `json:"kind"`
	Roles []string `json:"roles"`
	// Approve is true for an approval, false for a rejection.
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
	// Proof is an agent's signed statement of its vote (compact JWS).
	Proof string `json:"proof,omitempty"`
}

// Approval is a request to run one exact action, and what approvers said.
// Digest binds it to the action: agent, action, resource, canonical
// arguments, audience and policy version.
type Approval struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
	Agent  string `json:"agent"`
	Owner  string `json:"owner,omitempty"`
	// Delegation is the agents the requester acted through (a delegated
	// token's chain): none of them may approve either.
	Delegation []string `json:"delegation,omitempty"`
	// RequestedBy, when set, is who asked (a person asking for a grant):
	// they may not approve either.
	RequestedBy   string           `json:"requested_by,omitempty"`
	Action        string           `json:"action"`
	Resource      ApprovalResource `json:"resource"`
	Args          json.RawMessage  `json:"args"`
	Audience      string           `json:"audience"`
	PolicyVersion string           `json:"policy_version"`
	Rule          ApprovalRule     `json:"rule"`
	Status        ApprovalStatus   `json:"status"`
	// DecisionID is the decision that asked for it.
	DecisionID string         `json:"decision_id"`
	CreatedAt  time.Time      `json:"created_at"`
	ExpiresAt  time.Time      `json:"expires_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
	Votes      []ApprovalVote `json:"votes"`
	// ConsumedBy is the decision that ran the approved action.
	ConsumedBy string    `json:"consumed_by,omitempty"`
	ConsumedAt time.Time `json:"consumed_at,omitzero"`
}

// ApprovalFilter selects approvals. Zero fields match everything.
type ApprovalFilter struct {
	Agent  string
	Digest string
	Status ApprovalStatus
	// Live selects pending and approved requests.
	Live bool
	// After is a paging cursor: only approvals with a greater id.
	After string
	// Newest lists the newest first (After is then ignored).
	Newest bool
	Limit  int
}

// ApprovalStore keeps approval requests.
type ApprovalStore interface {
	// CreateApproval stores a new request with ev, in one transaction;
	// ErrConflict when a live request for its digest exists.
	CreateApproval(ctx context.Context, a Approval, ev Event) error
	// LiveApproval returns the pending or approved request for digest;
	// ErrNotFound when there is none.
	LiveApproval(ctx context.Context, digest string) (Approval, error)
	// UpdateApproval applies fn to request id and stores the result, with
	// the event fn returns when its Action is set, in one transaction (rows
	// locked: two updates of one request are one after the other, also
	// across replicas); ErrNotFound when there is none. An error from fn
	// changes nothing.
	UpdateApproval(ctx context.Context, id string, fn func(*Approval) (Event, error)) (Approval, error)
	// Approval returns one request; ErrNotFound when there is none.
	Approval(ctx context.Context, id string) (Approval, error)
	// Approvals lists requests ordered by id (which orders them by time).
	Approvals(ctx context.Context, f ApprovalFilter) ([]Approval, error)
}

// NewApprovalID makes an approval id that sorts by t: "apr_", the time in
// unix microseconds as 14 hex digits, and 10 random hex digits.
func NewApprovalID(t time.Time) string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("apr_%014x%s", t.UnixMicro(), hex.EncodeToString(b[:]))
}

// CheckApprovalUpdate refuses an update that changed what a request is
// for, or left it malformed; backends call it before writing.
func CheckApprovalUpdate(before, after *Approval) error {
	switch {
	case before.ID != after.ID || before.Digest != after.Digest || before.Agent != after.Agent:
		return fmt.Errorf("approval %s: what it is for cannot change", before.ID)
	case !after.Status.Valid():
		return fmt.Errorf("approval %s: status %q is not one of pending, approved, rejected, expired, consumed", before.ID, after.Status)
	case !before.Status.Live() && after.Status != before.Status:
		return fmt.Errorf("approval %s: %s is final", before.ID, before.Status)
	}
	after.UpdatedAt = Time(after.UpdatedAt)
	return nil
}
