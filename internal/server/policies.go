package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// maxBundleBody caps the body of a policy push: a bundle within lim, with
// room for JSON escaping.
func maxBundleBody(lim policy.Limits) int64 { return 2*int64(lim.Bytes) + 1<<20 }

// pushRequest is a bundle pushed as JSON: its files by path, as text.
type pushRequest struct {
	Files    map[string]string `json:"files"`
	Message  string            `json:"message"`
	Activate bool              `json:"activate"`
}

// pushPolicy answers POST /v1/policies: the bundle is compiled and tested
// here, and stored only if everything passes. A test slot is taken before
// the body is read, so that pushes waiting for one hold no bundle in
// memory; when none is free the push is refused as busy. Every refused
// push is recorded, like those that get in.
func (s *Server) pushPolicy(w http.ResponseWriter, r *http.Request, actor string) {
	slot, err := s.d.Policies.TryTestSlot()
	if err != nil {
		s.d.Policies.RecordRefusedPush(r.Context(), actor, policy.PushRefusal{Reason: policy.RefusedBusy, Err: err})
		s.policyError(w, err)
		return
	}
	defer slot.Release()
	var req pushRequest
	if err := decodeJSON(r, &req); err != nil {
		s.d.Policies.RecordRefusedPush(r.Context(), actor, policy.PushRefusal{Reason: policy.RefusedInvalidRequest, Err: err})
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if req.Message == "" || len(req.Message) > 1024 {
		s.d.Policies.RecordRefusedPush(r.Context(), actor, policy.PushRefusal{Reason: policy.RefusedInvalidRequest})
		writeError(w, http.StatusBadRequest, "invalid_request", "message: required, at most 1024 bytes, as a commit message")
		return
	}
	if req.Activate {
		// Activating is its own permission, and under two_person_activation
		// someone else's act.
		switch p := principalOf(r); {
		case !s.roles().Allows(p.Roles, humans.PoliciesActivate):
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s (roles %v) lacks the permission %s", p.ID, p.Roles, humans.PoliciesActivate))
			return
		case s.d.Humans != nil && s.d.Humans.Config().TwoPersonActivation:
			writeError(w, http.StatusForbidden, "forbidden", "two_person_activation: another person activates what you push; push without activating")
			return
		}
	}
	b := &policy.Bundle{Files: make(map[string][]byte, len(req.Files))}
	for p, c := range req.Files {
		b.Files[p] = []byte(c)
	}
	v, rep, created, err := slot.Push(r.Context(), actor, b, req.Message)
	if err != nil {
		s.policyError(w, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	out := map[string]any{"version": v, "created": created, "tests": rep.Counts()}
	if req.Activate {
		st, err := slot.Activate(r.Context(), actor, v.ID)
		if err != nil {
			s.policyError(w, err)
			return
		}
		out["state"] = st
	}
	writeJSON(w, status, out)
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, actor string) {
	limit, err := queryInt(r, "limit", 100)
	if err != nil || limit < 1 || limit > 1000 {
		writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 1000")
		return
	}
	vs, err := s.d.Policies.Versions(r.Context(), r.URL.Query().Get("before"), int(limit))
	if err != nil {
		s.adminError(w, err)
		return
	}
	if vs == nil {
		vs = []store.PolicyVersion{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": vs, "state": s.d.Policies.Live().State})
}

// getPolicy answers GET /v1/policies/{version} with the version and its files.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, actor string) {
	v, err := s.d.Policies.Version(r.Context(), r.PathValue("version"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	files := make(map[string]string, len(v.Files))
	for p, c := range v.Files {
		files[p] = string(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": v, "files": files, "tests": rawOrNull(v.Tests)})
}

func (s *Server) activatePolicy(w http.ResponseWriter, r *http.Request, actor string) {
	if s.d.Humans != nil && s.d.Humans.Config().TwoPersonActivation {
		// Two people: whoever pushed a version does not activate it.
		v, err := s.d.Policies.Version(r.Context(), r.PathValue("version"))
		if err != nil {
			s.adminError(w, err)
			return
		}
		if v.Author == actor {
			writeError(w, http.StatusForbidden, "forbidden", "two_person_activation: "+actor+" pushed this version; another person activates it")
			return
		}
	}
	slot, err := s.d.Policies.TryTestSlot()
	if err != nil {
		s.policyError(w, err)
		return
	}
	defer slot.Release()
	st, err := slot.Activate(r.Context(), actor, r.PathValue("version"))
	if err != nil {
		s.policyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": st})
}

func (s *Server) rollbackPolicy(w http.ResponseWriter, r *http.Request, actor string) {
	st, err := s.d.Policies.Rollback(r.Context(), actor)
	if err != nil {
		s.policyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": st})
}

func (s *Server) setShadowPolicy(w http.ResponseWriter, r *http.Request, actor string) {
	var body struct {
		Version string `json:"version"`
	}
	if r.Method == http.MethodPut {
		if err := decodeJSON(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if body.Version == "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "version: required (DELETE detaches the shadow)")
			return
		}
	}
	st, err := s.d.Policies.SetShadow(r.Context(), actor, body.Version)
	if err != nil {
		s.policyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": st})
}

func (s *Server) getShadowPolicy(w http.ResponseWriter, r *http.Request, actor string) {
	out := map[string]any{"version": s.d.Policies.Live().State.Shadow}
	if s.d.Decide != nil {
		out["stats"] = s.d.Decide.ShadowStats()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listActivations(w http.ResponseWriter, r *http.Request, actor string) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 || limit > 1000 {
		limit = 100
	}
	acts, err := s.d.Policies.Activations(r.Context(), limit)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if acts == nil {
		acts = []store.PolicyActivation{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"activations": acts, "state": s.d.Policies.Live().State})
}

// policyError maps the lifecycle's refusals: a bundle that does not compile
// or is over a limit (400), one whose tests fail (422, with the report) or
// were stopped over their time or memory (422), a version that is not
// stored (404), a concurrent change (409), every test slot taken (503,
// with Retry-After).
func (s *Server) policyError(w http.ResponseWriter, err error) {
	var failed *policy.TestsFailedError
	switch {
	case errors.As(err, &failed):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "tests_failed", "message": err.Error(), "report": failed.Report})
	case errors.Is(err, policy.ErrTestsStopped):
		writeError(w, http.StatusUnprocessableEntity, "tests_stopped", err.Error())
	case errors.Is(err, policy.ErrInvalidBundle):
		writeError(w, http.StatusBadRequest, "invalid_bundle", err.Error())
	case errors.Is(err, policy.ErrBusy):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
	default:
		s.adminError(w, err)
	}
}

func rawOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}
