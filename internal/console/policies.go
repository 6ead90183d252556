package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
)

// policiesPage is the versions, the activations and the shadow.
type policiesPage struct {
	State       store.PolicyState
	Versions    []store.PolicyVersion
	Activations []store.PolicyActivation
	Shadow      json.RawMessage
}

func (c *Console) policies(w http.ResponseWriter, r *http.Request, v view) {
	var p policiesPage
	var vs struct {
		Versions []store.PolicyVersion
		State    store.PolicyState
	}
	if err := c.get(r, v, "/v1/policies?limit=50", &vs); err != nil {
		httpError(w, "the policies could not be read: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	p.Versions, p.State = vs.Versions, vs.State
	var acts struct{ Activations []store.PolicyActivation }
	if err := c.get(r, v, "/v1/policies/activations?limit=20", &acts); err == nil {
		p.Activations = acts.Activations
	}
	var shadow map[string]json.RawMessage
	if c.get(r, v, "/v1/policies/shadow", &shadow) == nil {
		p.Shadow = shadow["stats"]
	}
	v.Title, v.Page = "Policies", p
	c.render(w, http.StatusOK, "policies", v)
}

// policyPage is one version: its files, what changed from the version it
// was pushed over (or another), and its test report.
type policyPage struct {
	Version store.PolicyVersion
	Against string
	Active  bool
	Files   []fileDiff
	// Same counts the files the two versions share unchanged.
	Same  int
	Tests string
}

type fileDiff struct {
	Path    string
	Status  string // added, removed, changed
	Lines   []diffLine
	TooLong bool
}

type diffLine struct {
	Op   string // " ", "+", "-", "…"
	Text string
}

// statusWords names policy.FileDiff's statuses.
var statusWords = map[string]string{"A": "added", "D": "removed", "M": "changed"}

// Class is the line's class in the page.
func (l diffLine) Class() string {
	switch l.Op {
	case "+":
		return "add"
	case "-":
		return "del"
	case "…":
		return "gap"
	}
	return "same"
}

type versionBody struct {
	Version store.PolicyVersion
	Files   map[string]string
	Tests   json.RawMessage
}

func (c *Console) policy(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("version")
	var cur versionBody
	if err := c.get(r, v, "/v1/policies/"+url.PathEscape(id), &cur); err != nil {
		status := http.StatusServiceUnavailable
		if e, ok := err.(*apiError); ok {
			status = e.Status
		}
		httpError(w, err.Error(), status)
		return
	}
	p := policyPage{Version: cur.Version, Against: r.URL.Query().Get("against"), Active: c.d.Policies.Live().State.Active == cur.Version.ID}
	if p.Against == "" {
		p.Against = cur.Version.Parent
	}
	var old versionBody
	if p.Against != "" {
		if err := c.get(r, v, "/v1/policies/"+url.PathEscape(p.Against), &old); err != nil {
			httpError(w, "against: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	for path, text := range cur.Files {
		if was, ok := old.Files[path]; ok && was == text {
			p.Same++
		}
	}
	for _, d := range policy.DiffFiles(old.Files, cur.Files) {
		f := fileDiff{Path: d.Path, Status: statusWords[d.Status], TooLong: !d.Exact}
		if d.Exact {
			f.Lines = withContext(d.Lines)
		}
		p.Files = append(p.Files, f)
	}
	if len(cur.Tests) > 0 && string(cur.Tests) != "null" {
		p.Tests = indent(cur.Tests)
	}
	v.Title, v.Page = "Policy "+short(cur.Version.ID, 19), p
	c.render(w, http.StatusOK, "policy", v)
}

// withContext keeps the changed lines and three lines around each; a
// run left out is one "…" line.
func withContext(all []policy.DiffLine) []diffLine {
	keep := make([]bool, len(all))
	for k, l := range all {
		if l.Op != ' ' {
			for d := max(0, k-3); d <= min(len(all)-1, k+3); d++ {
				keep[d] = true
			}
		}
	}
	var out []diffLine
	for k, l := range all {
		if keep[k] {
			out = append(out, diffLine{string(l.Op), l.Text})
		} else if k > 0 && keep[k-1] {
			out = append(out, diffLine{"…", ""})
		}
	}
	return out
}

// changePolicy activates a version or rolls back, by permission.
func (c *Console) changePolicy(w http.ResponseWriter, r *http.Request, v view) {
	var err error
	var msg string
	switch r.PostForm.Get("action") {
	case "activate":
		id := r.PostForm.Get("version")
		err = c.call(r, v, http.MethodPost, "/v1/policies/"+url.PathEscape(id)+"/activate", nil, nil)
		msg = "Version " + id + " is active."
	case "rollback":
		var out struct{ State store.PolicyState }
		err = c.call(r, v, http.MethodPost, "/v1/policies/rollback", nil, &out)
		msg = "Rolled back: version " + out.State.Active + " is active."
	default:
		err = fmt.Errorf("action: activate or rollback")
	}
	c.log.Info("console: policy changed", "principal", v.Principal.ID, "action", r.PostForm.Get("action"), "ok", err == nil)
	c.done(w, r, v, "/ui/policies", err, msg)
}
