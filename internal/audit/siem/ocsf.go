package siem

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/warden-run/warden/internal/audit"
)

// OCSF posts entries as Open Cybersecurity Schema Framework events, a JSON
// array per batch. Access decisions are Authorize Session events
// (class 3003, Identity & Access Management); admin actions, policy changes
// and automated responses are API Activity (class 6003, Application Activity),
// but the opening of an incident by the automatic response, an alert, which
// is a Detection Finding (class 2004, Findings).
type OCSF struct {
	cfg    HTTPConfig
	header http.Header
}

// NewOCSF makes an OCSF exporter; header holds extra request headers, such
// as the receiver's Authorization.
func NewOCSF(cfg HTTPConfig, header http.Header) (*OCSF, error) {
	if err := cfg.check("ocsf"); err != nil {
		return nil, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range header {
		h[k] = v
	}
	return &OCSF{cfg: cfg, header: h}, nil
}

// OCSF class identifiers used.
const (
	ocsfAuthorizeSession = 3003
	ocsfAPIActivity      = 6003
	ocsfDetectionFinding = 2004
)

// OCSFEvent maps one entry to an OCSF event.
func OCSFEvent(e *audit.Entry, data []byte) map[string]any {
	// activity_id 99 is "Other" in both classes: neither's fixed activities
	// (create/read/update/delete; assign privileges/groups) is what Warden does.
	class, category, className := ocsfAPIActivity, 6, "API Activity"
	if e.Kind == audit.KindDecision {
		class, category, className = ocsfAuthorizeSession, 3, "Authorize Session"
	}
	activity := 99
	if e.Kind == audit.KindResponse && e.Action == audit.ActionIncidentOpen {
		// The automatic response opened an incident: a finding, created.
		class, category, className, activity = ocsfDetectionFinding, 2, "Detection Finding", 1
	}
	statusID, status := 1, "Success"
	severityID := 1 // Informational
	if e.Outcome == "deny" {
		statusID, status, severityID = 2, "Failure", 3 // Medium
	}
	if e.Kind == audit.KindResponse {
		severityID = 4 // High
	}
	who := e.Agent
	if who == "" {
		who = e.Actor
	}
	ev := map[string]any{
		"class_uid":     class,
		"class_name":    className,
		"category_uid":  category,
		"activity_id":   activity,
		"activity_name": e.Action,
		"type_uid":      class*100 + activity,
		"time":          e.Time.UnixMilli(),
		"severity_id":   severityID,
		"status_id":     statusID,
		"status":        status,
		"message":       string(e.Kind) + " " + e.Action + " " + e.Outcome,
		"actor":         map[string]any{"user": map[string]any{"name": who, "uid": who}},
		"api":           map[string]any{"operation": e.Action},
		"metadata":      map[string]any{"version": "1.1.0", "uid": strconv.FormatInt(e.Index, 10), "product": map[string]any{"name": "Warden", "vendor_name": "Warden"}},
		"unmapped":      json.RawMessage(data),
	}
	if e.Target != "" || len(e.Resource) > 0 {
		r := map[string]any{}
		if e.Target != "" {
			r["uid"] = e.Target
		}
		if len(e.Resource) > 0 {
			r["data"] = json.RawMessage(e.Resource)
		}
		ev["resources"] = []any{r}
	}
	if e.DecisionID != "" {
		ev["session"] = map[string]any{"uid": e.DecisionID}
	}
	if e.Kind == audit.KindDecision {
		ev["user"] = map[string]any{"name": who, "uid": who} // Authorize Session: the one authorized
	}
	if class == ocsfDetectionFinding {
		ev["finding_info"] = findingInfo(e)
	}
	if l := lineageOf(e); l != nil {
		// What the action depended on: the entries of the reads its
		// arguments came from, as an enrichment.
		ev["enrichments"] = []any{map[string]any{"name": "warden.lineage", "type": "audit_index",
			"value": fmt.Sprintf("%d source reads, %d untrusted reads", len(l.Reads), len(l.Untrusted)), "data": l}}
	}
	return ev
}

type lineage struct {
	Reads     []int64 `json:"reads"`
	Untrusted []int64 `json:"untrusted_reads"`
}

func lineageOf(e *audit.Entry) *lineage {
	if e.Kind != audit.KindDecision || len(e.Detail) == 0 {
		return nil
	}
	var d struct {
		Lineage *lineage `json:"lineage"`
	}
	if json.Unmarshal(e.Detail, &d) != nil {
		return nil
	}
	return d.Lineage
}

// findingInfo describes an incident's opening as an OCSF finding: its id,
// a title, the signals that fired as its types, and the decision that fired
// them.
func findingInfo(e *audit.Entry) map[string]any {
	var d struct {
		Incident   string   `json:"incident"`
		Signals    []string `json:"signals"`
		Score      int      `json:"score"`
		Level      string   `json:"level"`
		AuditIndex int64    `json:"audit_index"`
	}
	json.Unmarshal(e.Detail, &d)
	return map[string]any{
		"uid":            d.Incident,
		"title":          fmt.Sprintf("agent %s at %s risk (%d)", e.Target, d.Level, d.Score),
		"types":          d.Signals,
		"related_events": []any{map[string]any{"uid": strconv.FormatInt(d.AuditIndex, 10)}},
	}
}

// Send implements Exporter.
func (o *OCSF) Send(ctx context.Context, batch []audit.Stored) error {
	events := make([]map[string]any, len(batch))
	for i, st := range batch {
		events[i] = OCSFEvent(st.Entry, st.Data)
	}
	body := marshal(events)
	return post(ctx, o.cfg.Client, "ocsf", o.cfg.URL, body, o.header)
}

// Close implements Exporter.
func (o *OCSF) Close() error { return nil }

var _ Exporter = (*OCSF)(nil)
