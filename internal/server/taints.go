package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

// Taints is what the API needs of the agents' taints.
type Taints interface {
	Of(ctx context.Context, agent string) ([]store.Taint, error)
	Clear(ctx context.Context, actor string, sel store.TaintSelection, reason string) ([]store.Taint, error)
}

// ClearTaintsRequest ends an agent's taints: in one task's scope, or with
// an empty task every one of them. The reason is required: it is the
// record of why the agent may be trusted again.
type ClearTaintsRequest struct {
	Reason string `json:"reason"`
	Task   string `json:"task,omitempty"`
}

// listTaints answers GET /v1/agents/{id}/taints.
func (s *Server) listTaints(w http.ResponseWriter, r *http.Request, actor string) {
	id := r.PathValue("id")
	if _, err := identity.ParseAgentID(id); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	ts, err := s.d.Taints.Of(r.Context(), id)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if ts == nil {
		ts = []store.Taint{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"taints": ts})
}

// clearTaints answers POST /v1/agents/{id}/taints/clear with what was
// cleared.
func (s *Server) clearTaints(w http.ResponseWriter, r *http.Request, actor string) {
	id := r.PathValue("id")
	if _, err := identity.ParseAgentID(id); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var body ClearTaintsRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if strings.TrimSpace(body.Reason) == "" || len(body.Reason) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid_request", "reason: required (at most 1024 bytes): why the agent may be trusted again")
		return
	}
	gone, err := s.d.Taints.Clear(r.Context(), actor, store.TaintSelection{AgentID: id, Task: body.Task, AnyTask: body.Task == ""}, body.Reason)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if gone == nil {
		gone = []store.Taint{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"cleared": gone})
}
