package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/warden-run/warden/internal/audit"
)

// decisionRow is a decision as the pages show it.
type decisionRow struct {
	Index                                int64
	ID, Time, Agent, Action, Resource    string
	Outcome, Point, PolicyVersion, Proof string
	Reasons                              []string
	Detail, Input                        string
}

func row(index int64, e *audit.Entry) decisionRow {
	var res struct{ Kind, ID string }
	json.Unmarshal(e.Resource, &res)
	return decisionRow{Index: index, ID: e.DecisionID, Time: e.Time.UTC().Format(time.RFC3339), Agent: e.Agent, Action: e.Action,
		Resource: res.ID, Outcome: e.Outcome, Point: e.EnforcementPoint, PolicyVersion: e.PolicyVersion, Reasons: e.Reasons,
		Detail: indent(e.Detail), Input: indent(e.Input)}
}

func indent(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// decisionsShown bounds the decisions page; decisionsScan bounds the
// audit entries one page reads looking for them, and scanBytes their
// bytes (agents choose how large their entries are): a page past either
// offers to go on from where it stopped.
const (
	decisionsShown = 100
	decisionsScan  = 50_000
	scanBytes      = 32 << 20
)

// scans bounds the searches of the audit log running at once, for every
// person together: a search reads up to scanBytes, and decisions share
// the machine with it.
const maxScans = 2

// search is the decision explorer's filter; empty fields match all.
type search struct {
	Agent, Action, Resource, Outcome, Reason string
	// Decision selects one decision by its id.
	Decision string
	// Since and Until bound the time, RFC 3339 or "2006-01-02T15:04".
	Since, Until string
	since, until time.Time
	// Before, when above 0, starts the search below that index.
	Before int64
	// tokens also collects the tokens issued to Agent.
	tokens bool
}

func (q search) Any() bool {
	return q.Agent != "" || q.Action != "" || q.Resource != "" || q.Outcome != "" || q.Reason != "" || q.Decision != "" || q.Since != "" || q.Until != ""
}

// Query is the search as a query string, without Before.
func (q search) Query() string {
	u := url.Values{}
	for k, v := range map[string]string{"agent": q.Agent, "action": q.Action, "resource": q.Resource, "outcome": q.Outcome, "reason": q.Reason,
		"decision": q.Decision, "since": q.Since, "until": q.Until} {
		if v != "" {
			u.Set(k, v)
		}
	}
	return u.Encode()
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2026-12-05T08:00:00Z) or 2026-12-05T08:00 (UTC)", s)
}

func readSearch(r *http.Request) (search, error) {
	q := r.URL.Query()
	s := search{Agent: q.Get("agent"), Action: q.Get("action"), Resource: q.Get("resource"), Outcome: q.Get("outcome"),
		Reason: q.Get("reason"), Decision: q.Get("decision"), Since: q.Get("since"), Until: q.Get("until")}
	for _, v := range []string{s.Agent, s.Action, s.Resource, s.Outcome, s.Reason, s.Decision, s.Since, s.Until} {
		if len(v) > 1024 {
			return s, fmt.Errorf("a search value is longer than 1024 bytes")
		}
	}
	var err error
	if s.Since != "" {
		if s.since, err = parseTime(s.Since); err != nil {
			return s, fmt.Errorf("since: %w", err)
		}
	}
	if s.Until != "" {
		if s.until, err = parseTime(s.Until); err != nil {
			return s, fmt.Errorf("until: %w", err)
		}
	}
	if b := q.Get("before"); b != "" {
		if s.Before, err = strconv.ParseInt(b, 10, 64); err != nil || s.Before < 1 {
			return s, fmt.Errorf("before: an audit entry's index, above 0")
		}
	}
	return s, nil
}

// scanned is what a scan found.
type scanned struct {
	Rows    []decisionRow
	Entries []*audit.Entry
	// Tokens are the token entries found, with tokens set: newest first.
	Tokens []*audit.Entry
	// Scanned counts the entries read; Next, when at least 0, is where an
	// older page starts (the scan stopped at its budget or at want).
	Scanned int
	Next    int64
	// From and To are the indexes the scan covered, [From, To).
	From, To int64
}

// scanChunk is how many entries a scan reads at a time.
const scanChunk = 512

// errBusy: as many searches as may run at once are running.
var errBusy = fmt.Errorf("the audit log is being searched by others; try again in a moment")

// scan reads the audit log newest first for decisions matching q, at most
// want of them and at most budget entries (and scanBytes). Entries whose
// bytes cannot hold a wanted value are passed over without decoding. It
// stops when ctx ends (the person left).
func (c *Console) scan(ctx context.Context, q search, want, budget int) (scanned, error) {
	out := scanned{Next: -1}
	select {
	case c.scans <- struct{}{}:
		defer func() { <-c.scans }()
	case <-time.After(5 * time.Second):
		return out, errBusy
	case <-ctx.Done():
		return out, ctx.Err()
	}
	n, err := c.d.Audit.Size(ctx)
	if err != nil {
		return out, err
	}
	top := n
	if q.Before > 0 {
		top = min(top, q.Before)
	}
	if !q.until.IsZero() {
		if top, err = c.firstAt(ctx, q.until, top); err != nil {
			return out, err
		}
	}
	// A value is in an entry's bytes as the canonical form writes it.
	var needles [][]byte
	for _, s := range []string{q.Agent, q.Action, q.Resource, q.Reason, q.Decision} {
		if s != "" {
			needles = append(needles, audit.StringBody(s))
		}
	}
	out.To, out.From = top, top
	read := 0
	for top > 0 && out.Scanned < budget && read < scanBytes {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		from := max(0, top-scanChunk, top-int64(budget-out.Scanned))
		raw, err := c.d.Audit.Read(ctx, from, top)
		if err != nil {
			return out, err
		}
	entries:
		for i, b := range slices.Backward(raw) {
			index := from + int64(i)
			if read >= scanBytes {
				top = index + 1
				break
			}
			out.Scanned++
			read += len(b)
			out.From, top = index, index // entries from index on are read
			for _, nd := range needles {
				if !bytes.Contains(b, nd) {
					continue entries
				}
			}
			e, err := audit.PeekEntry(b)
			if err == nil && q.tokens && e.Kind == audit.KindToken && e.Agent == q.Agent && e.Outcome == "allow" {
				out.Tokens = append(out.Tokens, e)
				continue
			}
			if err != nil || e.Kind != audit.KindDecision {
				continue
			}
			if !q.since.IsZero() && e.Time.Before(q.since) {
				return out, nil // older entries are older still (replicas' clocks aside)
			}
			if !q.matches(e) {
				continue
			}
			out.Rows = append(out.Rows, row(index, e))
			out.Entries = append(out.Entries, e)
			if len(out.Rows) == want {
				if index > 0 {
					out.Next = index
				}
				return out, nil
			}
		}
	}
	if top > 0 {
		out.Next = top
	}
	return out, nil
}

func (q search) matches(e *audit.Entry) bool {
	if q.Agent != "" && e.Agent != q.Agent || q.Action != "" && e.Action != q.Action || q.Outcome != "" && e.Outcome != q.Outcome ||
		q.Decision != "" && e.DecisionID != q.Decision ||
		q.Reason != "" && !slices.Contains(e.Reasons, q.Reason) || !q.until.IsZero() && !e.Time.Before(q.until) {
		return false
	}
	if q.Resource != "" {
		var res struct{ ID string }
		json.Unmarshal(e.Resource, &res)
		return strings.Contains(res.ID, q.Resource)
	}
	return true
}

// firstAt finds, below top, the first entry at or after t, by bisection
// on the entries' times (which the log keeps in order, replicas' clocks
// aside).
func (c *Console) firstAt(ctx context.Context, t time.Time, top int64) (int64, error) {
	return c.firstAtFrom(ctx, t, 0, top)
}

func (c *Console) timeAt(ctx context.Context, index int64) (time.Time, error) {
	raw, err := c.d.Audit.Read(ctx, index, index+1)
	if err != nil {
		return time.Time{}, err
	}
	if len(raw) != 1 {
		return time.Time{}, fmt.Errorf("audit entry %d not found", index)
	}
	return entryTime(raw[0])
}

// timeKey ends an entry in canonical form: "time" is its last key.
var timeKey = []byte(`,"time":"`)

// entryTime reads an entry's time from its end, where its canonical form
// keeps it, without decoding the rest.
func entryTime(b []byte) (time.Time, error) {
	if i := bytes.LastIndex(b, timeKey); i >= 0 && bytes.HasSuffix(b, []byte(`"}`)) {
		if t, err := time.Parse(time.RFC3339Nano, string(b[i+len(timeKey):len(b)-2])); err == nil {
			return t, nil
		}
	}
	e, err := audit.DecodeEntry(b)
	if err != nil {
		return time.Time{}, err
	}
	return e.Time, nil
}

func (c *Console) decisions(w http.ResponseWriter, r *http.Request, v view) {
	q, err := readSearch(r)
	if err != nil {
		httpError(w, err.Error(), http.StatusBadRequest)
		return
	}
	res, err := c.scan(r.Context(), q, decisionsShown, decisionsScan)
	switch {
	case err == errBusy:
		httpError(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil && r.Context().Err() != nil:
		return // the person left
	case err != nil:
		c.log.Error("console: decisions", "err", err)
		httpError(w, "the audit log cannot be read", http.StatusServiceUnavailable)
		return
	}
	v.Title, v.Search, v.Decisions, v.Page = "Decisions", q, res.Rows, res
	c.render(w, http.StatusOK, "decisions", v)
}

// decision shows one decision's entry and checks its inclusion proof
// against the latest signed checkpoint, whose signature it checks first.
func (c *Console) decision(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	index, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || index < 0 {
		httpError(w, "an entry is named by its index, a whole number", http.StatusBadRequest)
		return
	}
	raw, err := c.d.Audit.Read(ctx, index, index+1)
	if err != nil || len(raw) != 1 {
		httpError(w, "no such entry", http.StatusNotFound)
		return
	}
	e, err := audit.DecodeEntry(raw[0])
	if err != nil || e.Kind != audit.KindDecision {
		httpError(w, "that entry is not a decision", http.StatusNotFound)
		return
	}
	d := row(index, e)
	d.Proof = c.proveInclusion(r, index, raw[0])
	v.Title, v.Decision = "Decision "+d.ID, &d
	c.render(w, http.StatusOK, "decision", v)
}

// proveInclusion says whether the entry's inclusion proof verifies
// against the latest checkpoint.
func (c *Console) proveInclusion(r *http.Request, index int64, leaf []byte) string {
	ctx := r.Context()
	stored, err := c.d.Audit.Checkpoint(ctx)
	if err != nil {
		return "no checkpoint yet"
	}
	cv, err := audit.NewCheckpointVerifier(c.d.Audit.VerifierKey())
	if err != nil {
		return "the checkpoint key cannot be read"
	}
	cp, err := cv.Parse(stored.Signed)
	if err != nil {
		return "NOT VERIFIED: the latest checkpoint's signature does not verify"
	}
	if index >= cp.Size {
		return fmt.Sprintf("not yet under a checkpoint (the latest covers %d entries)", cp.Size)
	}
	hashes, _, err := c.d.Audit.InclusionProof(ctx, index, cp.Size)
	if err != nil {
		return "the proof cannot be made: " + err.Error()
	}
	h := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(h, uint64(index), uint64(cp.Size), h.HashLeaf(leaf), hashes, cp.Root); err != nil {
		return "NOT VERIFIED: " + err.Error()
	}
	return fmt.Sprintf("verified against the signed checkpoint of %d entries, root %s", cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
}
