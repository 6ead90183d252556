package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

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
	Tests   string
}

type fileDiff struct {
	Path    string
	Status  string // added, removed, changed, same
	Lines   []diffLine
	TooLong bool
}

type diffLine struct {
	Op   string // " ", "+", "-", "…"
	Text string
}

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
	paths := map[string]bool{}
	for k := range cur.Files {
		paths[k] = true
	}
	for k := range old.Files {
		paths[k] = true
	}
	names := make([]string, 0, len(paths))
	for k := range paths {
		names = append(names, k)
	}
	slices.Sort(names)
	budget := maxDiffCells // for the whole page: lines multiplied, over every file
	for _, name := range names {
		a, inOld := old.Files[name]
		b, inCur := cur.Files[name]
		f := fileDiff{Path: name}
		switch {
		case !inOld:
			f.Status = "added"
		case !inCur:
			f.Status = "removed"
		case a == b:
			f.Status = "same"
		default:
			f.Status = "changed"
		}
		if f.Status != "same" {
			la, lb := lines(a), lines(b)
			if cells := (len(la) + 1) * (len(lb) + 1); cells > budget || r.Context().Err() != nil {
				f.TooLong = true
			} else {
				budget -= cells
				f.Lines, f.TooLong = diffLines(la, lb)
			}
		}
		p.Files = append(p.Files, f)
	}
	if len(cur.Tests) > 0 && string(cur.Tests) != "null" {
		p.Tests = indent(cur.Tests)
	}
	v.Title, v.Page = "Policy "+short(cur.Version.ID, 19), p
	c.render(w, http.StatusOK, "policy", v)
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// maxDiffCells bounds the work of a page's diffs: each file's lines
// multiplied, summed over the files.
const maxDiffCells = 4_000_000

// diffLines is the longest-common-subsequence diff of a and b, with
// three lines of context around each change.
func diffLines(a, b []string) ([]diffLine, bool) {
	if len(a)*len(b) > maxDiffCells {
		return nil, true
	}
	// lcs[i][j] is the length of the LCS of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var all []diffLine
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			all = append(all, diffLine{" ", a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			all = append(all, diffLine{"+", b[j]})
			j++
		default:
			all = append(all, diffLine{"-", a[i]})
			i++
		}
	}
	// Keep changes and three lines around each.
	keep := make([]bool, len(all))
	for k, l := range all {
		if l.Op != " " {
			for d := max(0, k-3); d <= min(len(all)-1, k+3); d++ {
				keep[d] = true
			}
		}
	}
	var out []diffLine
	for k, l := range all {
		if keep[k] {
			out = append(out, l)
		} else if k > 0 && keep[k-1] {
			out = append(out, diffLine{"…", ""})
		}
	}
	return out, false
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
