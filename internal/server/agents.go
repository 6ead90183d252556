package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// AgentView is an agent as the admin API shows it.
type AgentView struct {
	ID              string            `json:"id"`
	TrustDomain     string            `json:"trust_domain"`
	Roles           []string          `json:"roles"`
	Owner           string            `json:"owner"`
	Attributes      map[string]string `json:"attributes"`
	Status          string            `json:"status"`
	Keys            []KeyView         `json:"keys"`
	TokensRevokedAt *time.Time        `json:"tokens_revoked_at,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

// KeyView is one registered agent key.
type KeyView struct {
	KID      string          `json:"kid"`
	JWK      json.RawMessage `json:"jwk"`
	AddedAt  time.Time       `json:"added_at"`
	RetireAt *time.Time      `json:"retire_at,omitempty"`
	Active   bool            `json:"active"`
}

func agentView(a store.Agent, now time.Time) AgentView {
	v := AgentView{ID: a.ID, TrustDomain: a.TrustDomain, Roles: a.Roles, Owner: a.Owner, Attributes: a.Attributes,
		Status: string(a.Status), CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, Keys: []KeyView{}}
	if v.Attributes == nil {
		v.Attributes = map[string]string{}
	}
	if !a.TokensRevokedAt.IsZero() {
		t := a.TokensRevokedAt
		v.TokensRevokedAt = &t
	}
	for _, k := range a.Keys {
		kv := KeyView{KID: k.KID, JWK: k.JWK, AddedAt: k.AddedAt, Active: k.ActiveAt(now)}
		if !k.RetireAt.IsZero() {
			t := k.RetireAt
			kv.RetireAt = &t
		}
		v.Keys = append(v.Keys, kv)
	}
	return v
}

func (s *Server) registerAgent(w http.ResponseWriter, r *http.Request, actor string) {
	var reg identity.Registration
	if err := decodeJSON(r, &reg); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	a, err := s.d.Registry.Register(r.Context(), actor, reg)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, agentView(a, time.Now()))
}

// updateAgent changes an agent's roles, owner or attributes
// (identity.AgentUpdate); its live tokens are revoked.
func (s *Server) updateAgent(w http.ResponseWriter, r *http.Request, actor string) {
	var u identity.AgentUpdate
	if err := decodeJSON(r, &u); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	a, err := s.d.Registry.Update(r.Context(), actor, r.PathValue("id"), u)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentView(a, time.Now()))
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	f := store.AgentFilter{TrustDomain: q.Get("trust_domain"), Status: store.AgentStatus(q.Get("status")), After: q.Get("after"), Limit: 100}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 1000")
			return
		}
		f.Limit = n
	}
	limit := f.Limit
	f.Limit++ // one more, to know whether there is a next page
	as, err := s.d.Registry.Agents(r.Context(), f)
	if err != nil {
		s.adminError(w, err)
		return
	}
	next := ""
	if len(as) > limit {
		as = as[:limit]
		next = as[limit-1].ID
	}
	now := time.Now()
	out := struct {
		Agents []AgentView `json:"agents"`
		Next   string      `json:"next,omitempty"`
	}{Agents: []AgentView{}}
	for _, a := range as {
		out.Agents = append(out.Agents, agentView(a, now))
	}
	out.Next = next
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request, actor string) {
	a, err := s.d.Registry.Agent(r.Context(), r.PathValue("id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentView(a, time.Now()))
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// optionalJSON decodes a body that may be empty (or chunked and empty).
func optionalJSON(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return describeJSONError(err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return decodeJSON(r, v)
}

// agentAction makes a handler for a route that changes one agent with an
// optional {"reason"} body and answers with the agent.
func (s *Server) agentAction(change func(ctx context.Context, actor, id, reason string) (store.Agent, error)) adminHandler {
	return func(w http.ResponseWriter, r *http.Request, actor string) {
		var body reasonBody
		if err := optionalJSON(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		a, err := change(r.Context(), actor, r.PathValue("id"), body.Reason)
		if err != nil {
			s.adminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, agentView(a, time.Now()))
	}
}

func (s *Server) setStatus(status store.AgentStatus) adminHandler {
	return s.agentAction(func(ctx context.Context, actor, id, reason string) (store.Agent, error) {
		return s.d.Registry.SetStatus(ctx, actor, id, status, reason)
	})
}

// RotateKeyRequest adds a key to an agent.
type RotateKeyRequest struct {
	PublicKey json.RawMessage `json:"public_key"`
	// Grace is how long the agent's other keys keep working, as a Go
	// duration ("24h", "0s"); empty for the configured default.
	Grace string `json:"grace,omitempty"`
}

func (s *Server) rotateAgentKey(w http.ResponseWriter, r *http.Request, actor string) {
	var body RotateKeyRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	grace := time.Duration(-1)
	if body.Grace != "" {
		d, err := time.ParseDuration(body.Grace)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", `grace must be a non-negative duration such as "24h"`)
			return
		}
		grace = d
	}
	a, err := s.d.Registry.RotateKey(r.Context(), actor, r.PathValue("id"), body.PublicKey, grace)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentView(a, time.Now()))
}

// RevokeTokenRequest revokes one access token.
type RevokeTokenRequest struct {
	JTI    string `json:"jti"`
	Agent  string `json:"agent,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, actor string) {
	var body RevokeTokenRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err := s.d.Registry.RevokeToken(r.Context(), actor, body.JTI, body.Agent, time.Time{}, body.Reason); err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": body.JTI})
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, actor string) {
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.d.Keys.Keys()})
}

// RotateKeysRequest rotates the issuer's signing key.
type RotateKeysRequest struct {
	// RetireNow unpublishes the replaced key at once, refusing every token it
	// signed: for a key that may be compromised.
	RetireNow bool `json:"retire_now,omitempty"`
}

func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request, actor string) {
	var body RotateKeysRequest
	if err := optionalJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	kid, err := s.d.Keys.Rotate(r.Context(), actor, body.RetireNow)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if err := s.d.View.RefreshKeys(r.Context()); err != nil {
		s.log.Error("issuer key rotated but the local view did not reload; the feed will", "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": kid, "keys": s.d.Keys.Keys()})
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	f := store.EventFilter{Target: q.Get("target"), Limit: 100}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", "after must be an event sequence number")
			return
		}
		f.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 1000")
			return
		}
		f.Limit = n
	}
	evs, err := s.d.Store.Events(r.Context(), f)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

// adminError maps an error to a status and a stable code. Validation
// messages go back to the admin, who needs them; store failures do not.
func (s *Server) adminError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, identity.ErrInvalidAgentID), errors.Is(err, identity.ErrInvalidAgent),
		errors.Is(err, identity.ErrInvalidKey), errors.Is(err, identity.ErrUnknownDomain),
		errors.Is(err, identity.ErrInvalidRequest):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	default:
		s.log.Error("admin request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; see the server log")
	}
}
