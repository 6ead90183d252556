package console

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/warden-run/warden/internal/store"
)

// approvalsPage is the approvals queue and the latest requests.
type approvalsPage struct {
	Pending []approvalRow
	Recent  []approvalRow
}

type approvalRow struct {
	store.Approval
	Args      string
	Approvals int
	Rejects   int
}

func approvalRows(list []store.Approval) []approvalRow {
	out := make([]approvalRow, 0, len(list))
	for _, a := range list {
		r := approvalRow{Approval: a, Args: short(string(a.Args), 200)}
		for _, v := range a.Votes {
			if v.Approve {
				r.Approvals++
			} else {
				r.Rejects++
			}
		}
		out = append(out, r)
	}
	return out
}

func (c *Console) approvals(w http.ResponseWriter, r *http.Request, v view) {
	var pending, recent struct{ Approvals []store.Approval }
	if err := c.get(r, v, "/v1/approvals?status=pending&live=true&limit=200", &pending); err != nil {
		http.Error(w, "the approval requests could not be read: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := c.get(r, v, "/v1/approvals?limit=50", &recent); err != nil {
		http.Error(w, "the approval requests could not be read: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var done []store.Approval
	for _, a := range recent.Approvals {
		if a.Status != store.ApprovalPending {
			done = append(done, a)
		}
	}
	v.Title, v.Page = "Approvals", approvalsPage{Pending: approvalRows(pending.Approvals), Recent: approvalRows(done)}
	c.render(w, http.StatusOK, "approvals", v)
}

// vote approves or rejects a request as the signed-in person.
func (c *Console) vote(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("id")
	var op string
	switch r.PostForm.Get("vote") {
	case "approve":
		op = "approve"
	case "reject":
		op = "reject"
	default:
		c.done(w, r, v, "/ui/approvals", fmt.Errorf("vote: approve or reject"), "")
		return
	}
	body := map[string]string{}
	if s := r.PostForm.Get("reason"); s != "" {
		body["reason"] = s
	}
	var a store.Approval
	err := c.call(r, v, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/"+op, body, &a)
	c.log.Info("console: approval vote", "principal", v.Principal.ID, "approval", id, "vote", op, "ok", err == nil)
	c.done(w, r, v, "/ui/approvals", err, fmt.Sprintf("Request %s: your vote (%s) is counted; the request is %s.", id, op, a.Status))
}

// incidentsPage is the incidents, newest first, each with its timeline.
type incidentsPage struct {
	Incidents []store.Incident
	Open      bool
}

func (c *Console) incidents(w http.ResponseWriter, r *http.Request, v view) {
	open := r.URL.Query().Get("all") == ""
	path := "/v1/incidents?limit=100"
	if open {
		path += "&open=true"
	}
	var out struct{ Incidents []store.Incident }
	if err := c.get(r, v, path, &out); err != nil {
		http.Error(w, "the incidents could not be read: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	v.Title, v.Page = "Incidents", incidentsPage{Incidents: out.Incidents, Open: open}
	c.render(w, http.StatusOK, "incidents", v)
}

// changeIncident acknowledges or resolves an incident, with a reason.
func (c *Console) changeIncident(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("id")
	op := r.PostForm.Get("action")
	if op != "ack" && op != "resolve" {
		c.done(w, r, v, "/ui/incidents", fmt.Errorf("action: ack or resolve"), "")
		return
	}
	why, err := reason(r)
	if err != nil {
		c.done(w, r, v, "/ui/incidents", err, "")
		return
	}
	var inc store.Incident
	err = c.call(r, v, http.MethodPost, "/v1/incidents/"+url.PathEscape(id)+"/"+op, map[string]string{"reason": why}, &inc)
	c.log.Info("console: incident changed", "principal", v.Principal.ID, "incident", id, "action", op, "ok", err == nil)
	c.done(w, r, v, "/ui/incidents?all=1", err, fmt.Sprintf("Incident %s is %s.", id, inc.Status))
}
