package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/warden-run/warden/internal/decide"
	"github.com/warden-run/warden/internal/store"
)

// MaxBatch is the most requests one batch decision may hold.
const MaxBatch = 100

type pepHandler func(w http.ResponseWriter, r *http.Request, pep decide.Point)

// pep guards the decision endpoints: the caller is a registered
// enforcement point (its credential) or an admin. An agent's own access
// token is neither, so an agent cannot ask about itself.
func (s *Server) pep(h pepHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var pt decide.Point
		ok := false
		if strings.EqualFold(scheme, "Bearer") && cred != "" {
			if s.d.EnforcementPoints != nil {
				pt, ok = s.d.EnforcementPoints.Authenticate(cred)
			}
			if !ok {
				var actor string
				if actor, ok = s.d.Admin.Authenticate(r); ok {
					pt = decide.AdminPoint(actor)
				}
			}
		}
		if !ok {
			s.log.Warn("decision request refused: bad or missing enforcement point credential", "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="warden-decide"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "an enforcement point credential is required")
			return
		}
		h(w, r, pt)
	})
}

// decideOne answers POST /v1/decide.
func (s *Server) decideOne(w http.ResponseWriter, r *http.Request, pep decide.Point) {
	var req decide.Request
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	d, err := s.d.Decide.Decide(r.Context(), pep, &req)
	if err != nil {
		s.decideError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// batchItem is one answer of a batch: a decision, or why the request
// could not be decided.
type batchItem struct {
	*decide.Decision
	Error *apiError `json:"error,omitempty"`
}

// decideBatch answers POST /v1/decide/batch: {"requests": [...]} to
// {"decisions": [...]}, in the same order.
func (s *Server) decideBatch(w http.ResponseWriter, r *http.Request, pep decide.Point) {
	var body struct {
		Requests []decide.Request `json:"requests"`
	}
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if len(body.Requests) == 0 || len(body.Requests) > MaxBatch {
		writeError(w, http.StatusBadRequest, "invalid_request", "requests: want 1 to 100 decision requests")
		return
	}
	ds, errs := s.d.Decide.DecideBatch(r.Context(), pep, body.Requests)
	out := make([]batchItem, len(ds))
	for i := range ds {
		if errs[i] != nil {
			code := "invalid_request"
			if !errors.Is(errs[i], decide.ErrInvalidRequest) {
				code = "request_canceled" // the caller went away; it is not reading
			}
			out[i].Error = &apiError{Code: code, Message: errs[i].Error()}
			continue
		}
		out[i].Decision = &ds[i]
	}
	writeJSON(w, http.StatusOK, map[string]any{"decisions": out})
}

func (s *Server) decideError(w http.ResponseWriter, err error) {
	if errors.Is(err, decide.ErrInvalidRequest) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.log.Error("decision failed", "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error; see the server log")
}

// registerEnforcementPoint answers POST /v1/enforcement-points with the
// new credential, shown this once.
func (s *Server) registerEnforcementPoint(w http.ResponseWriter, r *http.Request, actor string) {
	var body decide.Registration
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	cred, p, err := s.d.EnforcementPoints.Register(r.Context(), actor, body)
	if err != nil {
		s.enforcementError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Credential string `json:"credential"`
		enforcementPointView
	}{cred, viewEnforcementPoint(p)})
}

func (s *Server) listEnforcementPoints(w http.ResponseWriter, r *http.Request, actor string) {
	list, err := s.d.EnforcementPoints.List(r.Context())
	if err != nil {
		s.adminError(w, err)
		return
	}
	out := make([]enforcementPointView, 0, len(list))
	for _, p := range list {
		out = append(out, viewEnforcementPoint(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"enforcement_points": out})
}

func (s *Server) revokeEnforcementPoint(w http.ResponseWriter, r *http.Request, actor string) {
	p, err := s.d.EnforcementPoints.Revoke(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		s.enforcementError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewEnforcementPoint(p))
}

func (s *Server) enforcementError(w http.ResponseWriter, err error) {
	if errors.Is(err, decide.ErrInvalidEnforcementPoint) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.adminError(w, err)
}

type enforcementPointView struct {
	store.EnforcementPoint
	Status string `json:"status"` // active or revoked
	// AudienceUnset: registered before enforcement points had audiences;
	// its decisions accept a token issued for any resource.
	AudienceUnset bool `json:"audience_unset,omitempty"`
}

func viewEnforcementPoint(p store.EnforcementPoint) enforcementPointView {
	v := enforcementPointView{EnforcementPoint: p, Status: "active", AudienceUnset: p.AudienceUnset()}
	if !p.RevokedAt.IsZero() {
		v.Status = "revoked"
	}
	return v
}

// mayAllow answers POST /v1/decide/may-allow: for one agent's token and a
// list of actions on resources (their arguments unknown), whether policy
// could allow each; an enforcement point hides the others from the agent
// (MCP tools/list). Nothing is decided or recorded; any doubt is false.
func (s *Server) mayAllow(w http.ResponseWriter, r *http.Request, pep decide.Point) {
	var body struct {
		Token    string                `json:"token"`
		Audience string                `json:"audience"`
		Actions  []decide.Target       `json:"actions"`
		Context  decide.RequestContext `json:"context"`
	}
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if body.Token == "" || len(body.Actions) == 0 || len(body.Actions) > decide.MaxMayAllowTargets {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("token and 1 to %d actions are required", decide.MaxMayAllowTargets))
		return
	}
	out := s.d.Decide.MayAllowTargets(r.Context(), pep, &decide.Request{Token: body.Token, Audience: body.Audience, Context: body.Context}, body.Actions)
	writeJSON(w, http.StatusOK, map[string]any{"may_allow": out})
}
