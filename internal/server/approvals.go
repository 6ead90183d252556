package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/warden-run/warden/internal/approvals"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// Approvals is what the API does with approval requests.
type Approvals interface {
	Vote(ctx context.Context, id string, v approvals.Voter, approve bool, reason string) (store.Approval, error)
}

// VoteRequest approves or rejects a request. A person (with an admin
// credential) gives a reason; an agent sends Statement instead: its vote,
// signed with its own key (ApprovalStatement).
type VoteRequest struct {
	Reason    string `json:"reason,omitempty"`
	Statement string `json:"statement,omitempty"`
}

// ApprovalStatement is the claims of an agent's signed vote: addressed to
// the issuer's /v1/approvals, naming the request and its digest, so that
// it approves exactly that action.
type ApprovalStatement struct {
	identity.StatementClaims
	Approval string `json:"approval"`
	Digest   string `json:"digest"`
	Approve  *bool  `json:"approve"`
	Reason   string `json:"reason,omitempty"`
}

// maxReason bounds a vote's reason.
const maxReason = 1024

// listApprovals answers GET /v1/approvals?agent=&status=&live=true&newest=true&after=&limit=.
func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	f := store.ApprovalFilter{Agent: q.Get("agent"), Status: store.ApprovalStatus(q.Get("status")), After: q.Get("after"), Limit: 100}
	if f.Status != "" && !f.Status.Valid() {
		writeError(w, http.StatusBadRequest, "invalid_request", "status: want pending, approved, rejected, expired or consumed")
		return
	}
	for name, dst := range map[string]*bool{"live": &f.Live, "newest": &f.Newest} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", name+": want true or false")
				return
			}
			*dst = b
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit: want 1 to 1000")
			return
		}
		f.Limit = n
	}
	list, err := s.d.ApprovalStore.Approvals(r.Context(), f)
	if err != nil {
		s.adminError(w, err)
		return
	}
	next := ""
	if len(list) == f.Limit {
		next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": list, "next": next})
}

// getApproval answers GET /v1/approvals/{id}.
func (s *Server) getApproval(w http.ResponseWriter, r *http.Request, actor string) {
	a, err := s.d.ApprovalStore.Approval(r.Context(), r.PathValue("id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// vote answers POST /v1/approvals/{id}/approve and .../reject. A body with
// a statement is an agent's signed vote, and needs no other credential;
// any other is a person's, with an admin credential.
func (s *Server) vote(approve bool) http.Handler {
	person := s.admin(humans.ApprovalsVote, func(w http.ResponseWriter, r *http.Request, actor string) {
		var body VoteRequest
		if err := optionalJSON(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if body.Statement != "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "a statement is an agent's vote: send it without an admin credential")
			return
		}
		if len(body.Reason) > maxReason {
			writeError(w, http.StatusBadRequest, "invalid_request", "reason: at most 1024 bytes")
			return
		}
		p := principalOf(r)
		kind := store.ApproverHuman
		if !p.Human {
			kind = store.ApproverBootstrap
		}
		v := approvals.Voter{ID: actor, Email: p.Email, Kind: kind, Roles: p.Roles}
		s.castVote(w, r, r.PathValue("id"), v, approve, body.Reason)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			person.ServeHTTP(w, r)
			return
		}
		s.agentVote(w, r, approve)
	})
}

// agentVote records an agent's signed vote.
func (s *Server) agentVote(w http.ResponseWriter, r *http.Request, approve bool) {
	var body VoteRequest
	if err := decodeJSON(r, &body); err != nil || body.Statement == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "an admin credential, or an agent's signed statement, is required")
		return
	}
	id := r.PathValue("id")
	var st ApprovalStatement
	agent, err := s.d.Issuer.VerifyStatement(r.Context(), body.Statement, identity.StatementTypeApproval, s.cfg.Issuer+"/v1/approvals", &st)
	if err != nil {
		s.log.Info("approval vote refused: bad statement", "approval", id, "err", err)
		writeError(w, http.StatusUnauthorized, "invalid_statement", "the statement is not a valid vote signed by an active key of the agent it names: "+err.Error())
		return
	}
	switch {
	case st.Approval != id:
		writeError(w, http.StatusBadRequest, "invalid_statement", "the statement is for request "+strconv.Quote(st.Approval)+", not "+id)
		return
	case st.Approve == nil || *st.Approve != approve:
		writeError(w, http.StatusBadRequest, "invalid_statement", "the statement's approve claim does not match the endpoint (approve or reject)")
		return
	case len(st.Reason) > maxReason:
		writeError(w, http.StatusBadRequest, "invalid_statement", "reason: at most 1024 bytes")
		return
	}
	if agent.Status != store.StatusActive {
		// A restricted agent is contained: it approves nothing.
		writeError(w, http.StatusForbidden, "not_eligible", agent.ID+" is "+string(agent.Status)+": it cannot approve")
		return
	}
	a, err := s.d.ApprovalStore.Approval(r.Context(), id)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if a.Digest != st.Digest {
		writeError(w, http.StatusBadRequest, "invalid_statement", "the statement names digest "+strconv.Quote(st.Digest)+"; the request is for "+a.Digest)
		return
	}
	v := approvals.Voter{ID: agent.ID, Kind: store.ApproverAgent, Roles: agent.Roles, Owner: agent.Owner, Proof: body.Statement}
	s.castVote(w, r, id, v, approve, st.Reason)
	if s.d.Relay != nil {
		if err := s.d.Relay.Sync(context.WithoutCancel(r.Context())); err != nil {
			s.log.Error("audit: relaying events failed; the relay will retry", "err", err)
		}
	}
}

func (s *Server) castVote(w http.ResponseWriter, r *http.Request, id string, v approvals.Voter, approve bool, reason string) {
	a, err := s.d.Approvals.Vote(r.Context(), id, v, approve, reason)
	switch {
	case errors.Is(err, approvals.ErrSelf), errors.Is(err, approvals.ErrSameOwner), errors.Is(err, approvals.ErrNotEligible):
		writeError(w, http.StatusForbidden, "not_eligible", err.Error())
	case errors.Is(err, approvals.ErrFinal), errors.Is(err, approvals.ErrExpired), errors.Is(err, approvals.ErrChanged):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case err != nil:
		s.adminError(w, err)
	default:
		if s.d.Grants != nil {
			// A grant waiting for this request is given (or refused) now.
			if err := s.d.Grants.Approved(r.Context(), a); err != nil {
				s.log.Error("approvals: the grant of an approved request could not be given; the sweep retries", "approval", a.ID, "err", err)
			}
		}
		writeJSON(w, http.StatusOK, a)
	}
}
