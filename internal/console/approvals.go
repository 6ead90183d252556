package console

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/warden-run/warden/internal/store"
)

// approvalsPage is the approvals queue, oldest first a page at a time,
// and the latest requests decided.
type approvalsPage struct {
	Pending []approvalRow
	// Waiting counts the requests waiting (up to 1,000); Next is the
	// cursor of the next page of the queue.
	Waiting int
	Next    string
	Recent  []approvalRow
}

type approvalRow struct {
	store.Approval
	// Args are the arguments, whole, one key per line. TooLong says they
	// are too long to show here: the page then offers no vote.
	Args      string
	TooLong   int
	Approvals int
	Rejects   int
}

// maxShownArgs is the most of a request's arguments a page shows. A vote
// is on what was seen whole: past this, the console offers none.
const maxShownArgs = 64 << 10

// queuePage is how many waiting requests one page shows.
const queuePage = 50

func approvalRows(list []store.Approval) []approvalRow {
	out := make([]approvalRow, 0, len(list))
	for _, a := range list {
		r := approvalRow{Approval: a, Args: indent(a.Args)}
		if len(r.Args) > maxShownArgs {
			r.Args, r.TooLong = "", len(a.Args)
		}
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
	var pending, all, recent struct{ Approvals []store.Approval }
	after := r.URL.Query().Get("after")
	for _, q := range []struct {
		path string
		out  any
	}{
		{fmt.Sprintf("/v1/approvals?status=pending&live=true&limit=%d&after=%s", queuePage+1, url.QueryEscape(after)), &pending},
		{"/v1/approvals?status=pending&live=true&limit=1000", &all},
		{"/v1/approvals?newest=true&limit=100", &recent},
	} {
		if err := c.get(r, v, q.path, q.out); err != nil {
			httpError(w, "the approval requests could not be read: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	p := approvalsPage{Waiting: len(all.Approvals)}
	if len(pending.Approvals) > queuePage {
		pending.Approvals = pending.Approvals[:queuePage]
		p.Next = pending.Approvals[queuePage-1].ID
	}
	var done []store.Approval
	for _, a := range recent.Approvals {
		if a.Status != store.ApprovalPending && len(done) < 50 {
			done = append(done, a)
		}
	}
	p.Pending, p.Recent = approvalRows(pending.Approvals), approvalRows(done)
	v.Title, v.Page = "Approvals", p
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
	path := "/v1/incidents?newest=true&limit=100"
	if open {
		path += "&open=true"
	}
	var out struct{ Incidents []store.Incident }
	if err := c.get(r, v, path, &out); err != nil {
		httpError(w, "the incidents could not be read: "+err.Error(), http.StatusServiceUnavailable)
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
