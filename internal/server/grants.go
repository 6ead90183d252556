package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/warden-run/warden/internal/grants"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// Grants is what the API does with task grants (grants.Service).
type Grants interface {
	Ask(ctx context.Context, r grants.Request, by grants.Requester) (store.Grant, error)
	Revoke(ctx context.Context, id, by, reason string) (store.Grant, error)
	Complete(ctx context.Context, task, agent, by, reason string) (int, error)
	Approved(ctx context.Context, a store.Approval) error
}

// GrantStatement is the claims of an agent's signed grant request (Grant
// set) or completion of its task (Complete set).
type GrantStatement struct {
	identity.StatementClaims
	Grant    *grants.Request `json:"grant,omitempty"`
	Complete string          `json:"complete,omitempty"`
}

// GrantBody is a grant request or a task completion: a person's, as is;
// an agent's, as a statement signed with its own key.
type GrantBody struct {
	grants.Request
	Statement string `json:"statement,omitempty"`
}

// ReasonBody carries a reason, required.
type ReasonBody struct {
	Reason string `json:"reason"`
}

// agentStatement verifies an agent's signed grant statement.
func (s *Server) agentStatement(w http.ResponseWriter, r *http.Request, raw string) (store.Agent, *GrantStatement, bool) {
	var st GrantStatement
	agent, err := s.d.Issuer.VerifyStatement(r.Context(), raw, identity.StatementTypeGrant, s.cfg.Issuer+"/v1/grants", &st)
	if err != nil {
		s.log.Info("grant statement refused", "err", err)
		writeError(w, http.StatusUnauthorized, "invalid_statement", "the statement is not valid, signed by an active key of the agent it names: "+err.Error())
		return store.Agent{}, nil, false
	}
	return agent, &st, true
}

// askGrant answers POST /v1/grants.
func (s *Server) askGrant(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		s.admin(humans.GrantsWrite, func(w http.ResponseWriter, r *http.Request, actor string) {
			var body GrantBody
			if err := decodeJSON(r, &body); err != nil || body.Statement != "" {
				writeError(w, http.StatusBadRequest, "invalid_request", "a grant request (agent, task, actions, resources, constraints, lifetime, reason); an agent's statement goes without an admin credential")
				return
			}
			s.grantAnswer(w, r, body.Request, grants.Requester{ID: actor, Kind: store.ApproverHuman, Roles: principalOf(r).Roles})
		}).ServeHTTP(w, r)
		return
	}
	var body GrantBody
	if err := decodeJSON(r, &body); err != nil || body.Statement == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "an admin credential, a session, or an agent's signed statement is required")
		return
	}
	agent, st, ok := s.agentStatement(w, r, body.Statement)
	if !ok {
		return
	}
	if st.Grant == nil {
		writeError(w, http.StatusBadRequest, "invalid_statement", "the statement holds no grant request")
		return
	}
	if agent.Status != store.StatusActive {
		writeError(w, http.StatusForbidden, "refused", agent.ID+" is "+string(agent.Status)+": it is given nothing more")
		return
	}
	s.grantAnswer(w, r, *st.Grant, grants.Requester{ID: agent.ID, Kind: store.ApproverAgent, Roles: agent.Roles})
}

func (s *Server) grantAnswer(w http.ResponseWriter, r *http.Request, req grants.Request, by grants.Requester) {
	g, err := s.d.Grants.Ask(r.Context(), req, by)
	s.syncRelay(r)
	switch {
	case errors.Is(err, grants.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, grants.ErrRefused):
		writeError(w, http.StatusForbidden, "refused", err.Error())
	case err != nil:
		s.adminError(w, err)
	default:
		status := http.StatusCreated
		if g.Status == store.GrantPending {
			status = http.StatusAccepted
		}
		writeJSON(w, status, g)
	}
}

// completeTask answers POST /v1/tasks/{task}/complete: every live grant of
// the task ends. A person ends every agent's; an agent, with a signed
// statement, its own.
func (s *Server) completeTask(w http.ResponseWriter, r *http.Request) {
	task := r.PathValue("task")
	if r.Header.Get("Authorization") != "" {
		s.admin(humans.GrantsWrite, func(w http.ResponseWriter, r *http.Request, actor string) {
			var body ReasonBody
			if err := optionalJSON(r, &body); err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
				return
			}
			s.completeAnswer(w, r, task, "", actor, body.Reason)
		}).ServeHTTP(w, r)
		return
	}
	var body GrantBody
	if err := decodeJSON(r, &body); err != nil || body.Statement == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "an admin credential, a session, or an agent's signed statement is required")
		return
	}
	agent, st, ok := s.agentStatement(w, r, body.Statement)
	if !ok {
		return
	}
	if st.Complete != task {
		writeError(w, http.StatusBadRequest, "invalid_statement", "the statement completes task "+strconv.Quote(st.Complete)+", not "+strconv.Quote(task))
		return
	}
	s.completeAnswer(w, r, task, agent.ID, agent.ID, "task completed by the agent")
}

func (s *Server) completeAnswer(w http.ResponseWriter, r *http.Request, task, agent, by, reason string) {
	n, err := s.d.Grants.Complete(r.Context(), task, agent, by, reason)
	s.syncRelay(r)
	switch {
	case errors.Is(err, grants.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case err != nil:
		s.adminError(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"task": task, "ended": n})
	}
}

// listGrants answers GET /v1/grants?agent=&task=&status=&live=&after=&limit=.
func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	f := store.GrantFilter{Agent: q.Get("agent"), Task: q.Get("task"), Status: store.GrantStatus(q.Get("status")), After: q.Get("after"), Limit: 100}
	if f.Status != "" && !f.Status.Valid() {
		writeError(w, http.StatusBadRequest, "invalid_request", "status: want pending, active, revoked, expired, completed or rejected")
		return
	}
	if v := q.Get("live"); v != "" {
		live, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "live: want true or false")
			return
		}
		f.Live = live
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit: want 1 to 1000")
			return
		}
		f.Limit = n
	}
	list, err := s.d.GrantStore.Grants(r.Context(), f)
	if err != nil {
		s.adminError(w, err)
		return
	}
	next := ""
	if len(list) == f.Limit {
		next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": list, "next": next})
}

// getGrant answers GET /v1/grants/{id}.
func (s *Server) getGrant(w http.ResponseWriter, r *http.Request, actor string) {
	g, err := s.d.GrantStore.Grant(r.Context(), r.PathValue("id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// revokeGrant answers POST /v1/grants/{id}/revoke.
func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request, actor string) {
	var body ReasonBody
	if err := decodeJSON(r, &body); err != nil || body.Reason == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "reason is required")
		return
	}
	g, err := s.d.Grants.Revoke(r.Context(), r.PathValue("id"), actor, body.Reason)
	switch {
	case errors.Is(err, grants.ErrFinal):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case err != nil:
		s.adminError(w, err)
	default:
		writeJSON(w, http.StatusOK, g)
	}
}
