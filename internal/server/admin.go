package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// AdminAuth checks admin credentials: bearer tokens whose SHA-256 digests it
// holds. It never holds the tokens themselves.
type AdminAuth struct {
	creds []adminCred
}

type adminCred struct {
	actor  string
	digest [sha256.Size]byte
}

// NewAdminAuth makes an AdminAuth that accepts, for each actor, the token
// whose SHA-256 digest is given.
func NewAdminAuth(digests map[string][sha256.Size]byte) *AdminAuth {
	a := &AdminAuth{}
	for actor, d := range digests {
		a.creds = append(a.creds, adminCred{actor: actor, digest: d})
	}
	return a
}

// Authenticate returns the actor the request's bearer token belongs to.
// Digests are compared in constant time, and every credential is compared,
// so the time taken tells nothing about which one nearly matched.
func (a *AdminAuth) Authenticate(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	d := sha256.Sum256([]byte(tok))
	actor := ""
	for _, c := range a.creds {
		if subtle.ConstantTimeCompare(d[:], c.digest[:]) == 1 {
			actor = c.actor
		}
	}
	return actor, actor != ""
}

type adminHandler func(w http.ResponseWriter, r *http.Request, actor string)

// admin guards an admin endpoint. The refusal is the same for a missing,
// malformed or wrong credential.
func (s *Server) admin(h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, ok := s.d.Admin.Authenticate(r)
		if !ok {
			s.log.Warn("admin request refused: bad or missing credential", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "an admin credential is required")
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead || s.d.Relay == nil {
			h(w, r, actor)
			return
		}
		// The change is committed with its event; put the event in the
		// audit log before answering, so that whoever made the change finds
		// it there (the relay's loop retries if this fails).
		buf := &heldResponse{header: w.Header()}
		h(buf, r, actor)
		if err := s.d.Relay.Sync(context.WithoutCancel(r.Context())); err != nil {
			s.log.Error("audit: relaying admin events failed; the relay will retry", "err", err)
		}
		buf.send(w)
	})
}

// heldResponse keeps a (small) admin response until it may be sent.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *heldResponse) send(w http.ResponseWriter) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	w.WriteHeader(h.status)
	w.Write(h.body.Bytes())
}
