package console

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
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

// decisionsShown bounds the decisions page.
const decisionsShown = 100

func (c *Console) decisions(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	outcome := r.URL.Query().Get("outcome")
	n, err := c.d.Audit.Size(ctx)
	if err != nil {
		http.Error(w, "the audit log cannot be read", http.StatusServiceUnavailable)
		return
	}
	from := max(0, n-overviewWindow)
	raw, err := c.d.Audit.Read(ctx, from, n)
	if err != nil {
		http.Error(w, "the audit log cannot be read", http.StatusServiceUnavailable)
		return
	}
	v.Overview.Window = len(raw)
	for i, b := range slices.Backward(raw) {
		e, err := audit.DecodeEntry(b)
		if err != nil || e.Kind != audit.KindDecision || outcome != "" && e.Outcome != outcome {
			continue
		}
		v.Decisions = append(v.Decisions, row(from+int64(i), e))
		if len(v.Decisions) == decisionsShown {
			break
		}
	}
	v.Title, v.Filter = "Decisions", outcome
	c.render(w, http.StatusOK, "decisions", v)
}

// decision shows one decision's entry and checks its inclusion proof
// against the latest signed checkpoint, whose signature it checks first.
func (c *Console) decision(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	index, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || index < 0 {
		http.Error(w, "an entry is named by its index, a whole number", http.StatusBadRequest)
		return
	}
	raw, err := c.d.Audit.Read(ctx, index, index+1)
	if err != nil || len(raw) != 1 {
		http.Error(w, "no such entry", http.StatusNotFound)
		return
	}
	e, err := audit.DecodeEntry(raw[0])
	if err != nil || e.Kind != audit.KindDecision {
		http.Error(w, "that entry is not a decision", http.StatusNotFound)
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
