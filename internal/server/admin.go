package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/warden-run/warden/internal/humans"
)

// AdminAuth checks the bootstrap admin token: bearer tokens whose SHA-256
// digests it holds, or reads from Source at each request (where the token
// is rotated and disabled for every replica). It never holds the tokens.
type AdminAuth struct {
	creds []adminCred
	// Source, when set, answers the bootstrap token's digest, and whether
	// it is disabled.
	Source BootstrapSource
	Actor  string
}

// BootstrapSource is where the bootstrap token's digest is kept.
type BootstrapSource interface {
	Bootstrap(ctx context.Context) (digest [sha256.Size]byte, enabled bool, err error)
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
	creds := a.creds
	if a.Source != nil {
		d, enabled, err := a.Source.Bootstrap(r.Context())
		if err != nil || !enabled {
			return "", false // fail closed: a store that does not answer admits nobody
		}
		creds = []adminCred{{actor: a.Actor, digest: d}}
	}
	d := sha256.Sum256([]byte(tok))
	actor := ""
	for _, c := range creds {
		if subtle.ConstantTimeCompare(d[:], c.digest[:]) == 1 {
			actor = c.actor
		}
	}
	return actor, actor != ""
}

type adminHandler func(w http.ResponseWriter, r *http.Request, actor string)

type principalKey struct{}

// principalOf is who an admin request is from.
func principalOf(r *http.Request) humans.Principal {
	p, _ := r.Context().Value(principalKey{}).(humans.Principal)
	return p
}

// authenticate finds who a request is from: a person's session, or the
// bootstrap token (which holds the admin role).
func (s *Server) authenticate(r *http.Request) (humans.Principal, bool) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Bearer") && humans.IsSession(tok) {
		if s.d.Humans == nil {
			return humans.Principal{}, false
		}
		p, err := s.d.Humans.Authenticate(r.Context(), tok)
		if err != nil {
			if !errors.Is(err, humans.ErrNoSession) && !errors.Is(err, humans.ErrSessionEnd) {
				s.log.Error("admin request refused: sessions cannot be read", "err", err)
			}
			return humans.Principal{}, false
		}
		return p, true
	}
	actor, ok := s.d.Admin.Authenticate(r)
	if !ok {
		return humans.Principal{}, false
	}
	return humans.Principal{ID: actor, Roles: []string{"admin"}}, true
}

// admin guards an admin endpoint that needs perm. The refusal says
// whether a credential was given (the caller knows that already), not
// what is wrong with it; a person without the permission is told which
// one it takes.
func (s *Server) admin(perm humans.Permission, h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="warden-admin"`)
			if r.Header.Get("Authorization") == "" {
				s.log.Warn("admin request refused: no credential", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
				writeError(w, http.StatusUnauthorized, "unauthorized", "an admin credential or a signed-in session is required")
				return
			}
			s.log.Warn("admin request refused: the credential is not valid", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "unauthorized", "the credential given is not valid: a wrong, rotated or disabled admin token, or a session that ended (warden login)")
			return
		}
		if !s.roles().Allows(p.Roles, perm) {
			s.log.Warn("admin request refused: permission", "method", r.Method, "path", r.URL.Path, "principal", p.ID, "needs", perm)
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s (roles %v) lacks the permission %s", p.ID, p.Roles, perm))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if r.Method == http.MethodGet || r.Method == http.MethodHead || s.d.Relay == nil {
			h(w, r, p.ID)
			return
		}
		// The change is committed with its event; put the event in the
		// audit log before answering, so that whoever made the change finds
		// it there (the relay's loop retries if this fails).
		buf := &heldResponse{header: w.Header()}
		h(buf, r, p.ID)
		if err := s.d.Relay.Sync(context.WithoutCancel(r.Context())); err != nil {
			s.log.Error("audit: relaying admin events failed; the relay will retry", "err", err)
		}
		buf.send(w)
	})
}

func (s *Server) roles() humans.Roles {
	if s.d.Humans != nil {
		return s.d.Humans.Roles()
	}
	r, _ := humans.NewRoles(nil)
	return r
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
