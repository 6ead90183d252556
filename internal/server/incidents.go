package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/store"
)

// Monitor is what the API reads of the behavioural monitor.
type Monitor interface {
	Report(agent string) (monitor.AgentReport, bool)
	Risk(agent string) monitor.Risk
	Stats() monitor.Stats
	Rebuild()
}

// IncidentRequest acknowledges or resolves an incident; the reason is
// required.
type IncidentRequest struct {
	Reason string `json:"reason"`
}

// agentRisk answers GET /v1/agents/{id}/risk: the agent's risk, and what
// fired, with evidence.
func (s *Server) agentRisk(w http.ResponseWriter, r *http.Request, actor string) {
	id := r.PathValue("id")
	if _, err := identity.ParseAgentID(id); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	rep, ok := s.d.Monitor.Report(id)
	if !ok {
		rep = monitor.AgentReport{Agent: id, Risk: s.d.Monitor.Risk(id), Firings: map[string]*monitor.Firing{},
			Position: s.d.Monitor.Stats().Position}
	}
	writeJSON(w, http.StatusOK, rep)
}

// monitorStatus answers GET /v1/monitor: how far the monitor has read.
func (s *Server) monitorStatus(w http.ResponseWriter, r *http.Request, actor string) {
	size, err := s.d.Audit.Size(r.Context())
	if err != nil {
		s.adminError(w, err)
		return
	}
	st := s.d.Monitor.Stats()
	var dropped int64
	if s.d.AlertsDropped != nil {
		dropped = s.d.AlertsDropped()
	}
	writeJSON(w, http.StatusOK, map[string]any{"position": st.Position, "applied": st.Applied, "skipped": st.Skipped,
		"caught_up_at": st.CaughtUpAt, "log_size": size, "behind": max(0, size-1-st.Position), "alerts_dropped": dropped})
}

// rebuildMonitor answers POST /v1/monitor/rebuild: the model is read again
// from the whole audit log, and the change is on the record.
func (s *Server) rebuildMonitor(w http.ResponseWriter, r *http.Request, actor string) {
	var body IncidentRequest
	if err := optionalJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	detail, _ := json.Marshal(map[string]string{"reason": body.Reason})
	if err := s.d.Store.RecordEvent(r.Context(), store.Event{Time: store.Now(), Actor: actor, Action: "monitor.rebuild", Detail: detail}); err != nil {
		s.adminError(w, err)
		return
	}
	s.d.Monitor.Rebuild()
	s.monitorStatus(w, r, actor)
}

// listIncidents answers GET /v1/incidents?agent=&status=&open=true&newest=true&after=&limit=.
func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	f := store.IncidentFilter{AgentID: q.Get("agent"), Status: store.IncidentStatus(q.Get("status")), After: q.Get("after"), Limit: 100}
	if f.Status != "" && !f.Status.Valid() {
		writeError(w, http.StatusBadRequest, "invalid_request", "status: want open, acknowledged or resolved")
		return
	}
	for name, dst := range map[string]*bool{"open": &f.Open, "newest": &f.Newest} {
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
	incs, err := s.d.Incidents.Incidents(r.Context(), f)
	if err != nil {
		s.adminError(w, err)
		return
	}
	next := ""
	if len(incs) == f.Limit {
		next = incs[len(incs)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": incs, "next": next})
}

// getIncident answers GET /v1/incidents/{id}.
func (s *Server) getIncident(w http.ResponseWriter, r *http.Request, actor string) {
	inc, err := s.d.Incidents.Incident(r.Context(), r.PathValue("id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inc)
}

// setIncidentStatus makes the handler of POST /v1/incidents/{id}/ack and
// /resolve. A resolved incident stays resolved; the agent's status is not
// changed (release it with /v1/agents/{id}/enable).
func (s *Server) setIncidentStatus(status store.IncidentStatus) adminHandler {
	return func(w http.ResponseWriter, r *http.Request, actor string) {
		var body IncidentRequest
		if err := decodeJSON(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if strings.TrimSpace(body.Reason) == "" || len(body.Reason) > 1024 {
			writeError(w, http.StatusBadRequest, "invalid_request", "reason: required (at most 1024 bytes)")
			return
		}
		id := r.PathValue("id")
		now := store.Now()
		kind, action := "acknowledged", "incident.ack"
		if status == store.IncidentResolved {
			kind, action = "resolved", "incident.resolve"
		}
		detail, _ := json.Marshal(map[string]string{"reason": body.Reason})
		ev := store.Event{Time: now, Actor: actor, Action: action, Target: id, Detail: detail}
		inc, err := s.d.Incidents.UpdateIncident(r.Context(), id, ev, func(inc *store.Incident) error {
			if inc.Status == store.IncidentResolved {
				return fmt.Errorf("%w: incident %s is resolved already", store.ErrConflict, id)
			}
			inc.Status, inc.UpdatedAt = status, now
			inc.Note(store.IncidentEvent{Time: now, Kind: kind, Actor: actor, Note: body.Reason})
			return nil
		})
		if err != nil {
			s.adminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, inc)
	}
}
