package console

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/monitor"
	"github.com/warden-run/warden/internal/store"
)

// agentRow is an agent as the agents page lists it.
type agentRow struct {
	store.Agent
	Risk    monitor.Risk
	HasRisk bool
}

// agentsShown is how many agents one page of the agents page reads.
const agentsShown = 1000

// agentSearch is the agents page's filter.
type agentSearch struct {
	Q, TrustDomain, Status, Role, Risk, After string
}

func (c *Console) agents(w http.ResponseWriter, r *http.Request, v view) {
	q := r.URL.Query()
	f := agentSearch{Q: q.Get("q"), TrustDomain: q.Get("trust_domain"), Status: q.Get("status"), Role: q.Get("role"), Risk: q.Get("risk"), After: q.Get("after")}
	if f.Status != "" && !slices.Contains(statuses, store.AgentStatus(f.Status)) {
		httpError(w, "status: want active, restricted, quarantined or disabled", http.StatusBadRequest)
		return
	}
	as, err := c.d.Agents(r.Context(), store.AgentFilter{TrustDomain: f.TrustDomain, Status: store.AgentStatus(f.Status), After: f.After, Limit: agentsShown + 1})
	if err != nil {
		c.log.Error("console: agents", "err", err)
		httpError(w, "the agents could not be read", http.StatusServiceUnavailable)
		return
	}
	if len(as) > agentsShown {
		as = as[:agentsShown]
		v.Next = as[len(as)-1].ID
	}
	canRisk := v.Can["monitor.read"] && c.d.Risk != nil
	for _, a := range as {
		if f.Q != "" && !strings.Contains(a.ID, f.Q) && !strings.Contains(a.Owner, f.Q) ||
			f.Role != "" && !slices.Contains(a.Roles, f.Role) {
			continue
		}
		row := agentRow{Agent: a}
		if canRisk {
			row.Risk, row.HasRisk = c.d.Risk(a.ID)
		}
		if f.Risk != "" && (!row.HasRisk || row.Risk.Level != f.Risk) {
			continue
		}
		v.Agents = append(v.Agents, row)
	}
	if canRisk && q.Get("sort") == "risk" {
		slices.SortStableFunc(v.Agents, func(a, b agentRow) int { return cmp.Compare(b.Risk.Score, a.Risk.Score) })
	}
	v.Title, v.Page = "Agents", f
	c.render(w, http.StatusOK, "agents", v)
}

var statuses = []store.AgentStatus{store.StatusActive, store.StatusRestricted, store.StatusQuarantined, store.StatusDisabled}

// agentPage is one agent's page.
type agentPage struct {
	Agent    store.Agent
	Revoked  string
	Risk     *monitor.AgentReport
	Signals  []signalRow
	Taints   []store.Taint
	Grants   []store.Grant
	Tokens   []tokenRow
	Recent   []decisionRow
	Scanned  int
	Timeline chart
	Errors   []string
}

type signalRow struct {
	Name     string
	Count    int64
	Last     string
	Evidence []int64
}

func (c *Console) agent(w http.ResponseWriter, r *http.Request, v view) {
	id := r.URL.Query().Get("id")
	p := agentPage{}
	if err := c.get(r, v, "/v1/agents/"+url.PathEscape(id), &p.Agent); err != nil {
		status := http.StatusBadGateway
		if e, ok := err.(*apiError); ok {
			status = e.Status
		}
		httpError(w, err.Error(), status)
		return
	}
	if !p.Agent.TokensRevokedAt.IsZero() {
		p.Revoked = p.Agent.TokensRevokedAt.UTC().Format(time.RFC3339)
	}
	esc := url.PathEscape(id)
	if v.Can["monitor.read"] {
		var rep monitor.AgentReport
		if err := c.get(r, v, "/v1/agents/"+esc+"/risk", &rep); err == nil {
			p.Risk = &rep
			for name, f := range rep.Firings {
				p.Signals = append(p.Signals, signalRow{Name: name, Count: f.Count, Last: f.Last.UTC().Format(time.RFC3339), Evidence: f.Evidence})
			}
			slices.SortFunc(p.Signals, func(a, b signalRow) int { return strings.Compare(b.Last, a.Last) })
		} else if e, ok := err.(*apiError); !ok || e.Status != http.StatusNotFound {
			p.Errors = append(p.Errors, "risk: "+err.Error())
		}
	}
	if v.Can["taints.read"] {
		var out struct{ Taints []store.Taint }
		if err := c.get(r, v, "/v1/agents/"+esc+"/taints", &out); err == nil {
			p.Taints = out.Taints
		} else if e, ok := err.(*apiError); !ok || e.Status != http.StatusNotFound {
			p.Errors = append(p.Errors, "taints: "+err.Error())
		}
	}
	if v.Can["grants.read"] {
		var out struct{ Grants []store.Grant }
		if err := c.get(r, v, "/v1/grants?live=true&agent="+url.QueryEscape(id), &out); err == nil {
			p.Grants = out.Grants
		} else if e, ok := err.(*apiError); !ok || e.Status != http.StatusNotFound {
			p.Errors = append(p.Errors, "grants: "+err.Error())
		}
	}
	if v.CanReadAudit {
		res, err := c.scan(r.Context(), search{Agent: id, tokens: true}, agentDecisions, agentScan)
		if err != nil {
			p.Errors = append(p.Errors, "decisions: "+err.Error())
		}
		p.Tokens = c.liveTokens(res.Tokens, p.Agent)
		p.Recent, p.Scanned = res.Rows[:min(len(res.Rows), agentRowsShown)], res.Scanned
		p.Timeline = riskChart(res.Entries)
	}
	v.Title, v.Page = "Agent "+id, p
	c.render(w, http.StatusOK, "agent", v)
}

// tokenRow is a token issued to the agent that has not expired, as its
// audit entry recorded it (never the token itself).
type tokenRow struct {
	JTI, Issued, Expires, Key, Audience, Task, Type string
	Delegated                                       bool
	// Dead says why it no longer works, "" when it does.
	Dead string
}

// liveTokens are the tokens among entries (newest first) that have not
// expired, each with whether a revocation ended it.
func (c *Console) liveTokens(entries []*audit.Entry, a store.Agent) []tokenRow {
	now := c.cfg.Now()
	var out []tokenRow
	for _, e := range entries {
		var d struct {
			Act                                       []string
			Audience, Expires, JTI, Key, Task, Source string
			TokenType                                 string `json:"token_type"`
		}
		if json.Unmarshal(e.Detail, &d) != nil {
			continue
		}
		exp, err := time.Parse(time.RFC3339, d.Expires)
		if err != nil || !exp.After(now) {
			continue
		}
		t := tokenRow{JTI: d.JTI, Issued: e.Time.UTC().Format(time.RFC3339), Expires: d.Expires, Key: d.Key, Audience: d.Audience,
			Task: d.Task, Type: d.TokenType, Delegated: len(d.Act) > 0}
		switch {
		case !a.TokensRevokedAt.IsZero() && !e.Time.After(a.TokensRevokedAt):
			t.Dead = "revoked with all the agent's tokens"
		case c.d.TokenRevoked != nil && c.d.TokenRevoked(d.JTI):
			t.Dead = "revoked"
		case !a.Status.MayHoldTokens():
			t.Dead = "refused while the agent is " + string(a.Status)
		}
		out = append(out, t)
	}
	return out
}

// agentDecisions and agentScan bound the agent page's recent decisions:
// the newest 200 among the newest 20,000 audit entries (drawn as its risk
// over time), of which the newest 50 are listed.
const (
	agentRowsShown = 50
	agentDecisions = 200
	agentScan      = 20_000
)

// agentActions are the changes the agent page offers, by the API path
// that makes them.
var agentActions = map[string]string{
	// revoke-token ends one token (its id in the form).
	"revoke-token": "",
	"quarantine":   "quarantine", "restrict": "restrict", "release": "enable", "disable": "disable", "revoke": "revoke",
}

func (c *Console) changeAgent(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PostForm.Get("id")
	back := "/ui/agent?id=" + url.QueryEscape(id)
	op, ok := agentActions[r.PostForm.Get("action")]
	if !ok {
		c.done(w, r, v, back, fmt.Errorf("no such action %q", r.PostForm.Get("action")), "")
		return
	}
	why, err := reason(r)
	if err != nil {
		c.done(w, r, v, back, err, "")
		return
	}
	if r.PostForm.Get("action") == "revoke-token" {
		jti := r.PostForm.Get("jti")
		err := c.call(r, v, http.MethodPost, "/v1/tokens/revoke", map[string]string{"jti": jti, "agent": id, "reason": why}, nil)
		c.log.Info("console: token revoked", "principal", v.Principal.ID, "agent", id, "jti", jti, "ok", err == nil)
		c.done(w, r, v, back, err, fmt.Sprintf("Token %s of %s is revoked.", jti, id))
		return
	}
	var a store.Agent
	err = c.call(r, v, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/"+op, map[string]string{"reason": why}, &a)
	msg := fmt.Sprintf("%s: %s done; the agent is %s.", id, r.PostForm.Get("action"), a.Status)
	if op == "revoke" {
		msg = fmt.Sprintf("%s: every token issued until now is revoked.", id)
	}
	c.log.Info("console: agent changed", "principal", v.Principal.ID, "agent", id, "action", op, "ok", err == nil)
	c.done(w, r, v, back, err, msg)
}

// riskChart draws an agent's risk score as its decisions recorded it
// (context.risk in each recorded input), oldest first, with a mark where
// signals were named.
func riskChart(entries []*audit.Entry) chart {
	var pts []point
	for _, e := range slices.Backward(entries) {
		var in struct {
			Context struct {
				Risk *monitor.Risk `json:"risk"`
			} `json:"context"`
		}
		if len(e.Input) == 0 || json.Unmarshal(e.Input, &in) != nil || in.Context.Risk == nil {
			continue
		}
		pts = append(pts, point{T: e.Time, V: float64(in.Context.Risk.Score), Mark: strings.Join(in.Context.Risk.Signals, ", ")})
	}
	return lineChart(pts, 100)
}
