package console

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/warden-run/warden/internal/audit"
)

// auditPage is the log's state: its size, its latest checkpoints, and
// what the server checked of them on this request.
type auditPage struct {
	Size        int64
	Origin      string
	Key         string
	Checkpoints []checkpointRow
	Signature   string
	Consistency string
	Verified    bool
}

type checkpointRow struct {
	Size int64
	Time string
	Root string
}

// checkpointsShown is how many of the latest checkpoints the page lists.
const checkpointsShown = 20

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, v view) {
	ctx := r.Context()
	p := auditPage{Origin: c.d.Audit.Origin(), Key: c.d.Audit.VerifierKey()}
	var err error
	if p.Size, err = c.d.Audit.Size(ctx); err != nil {
		httpError(w, "the audit log cannot be read", http.StatusServiceUnavailable)
		return
	}
	latest, err := c.d.Audit.Checkpoint(ctx)
	if err != nil {
		p.Signature = "no checkpoint yet"
		v.Title, v.Page = "Audit log", p
		c.render(w, http.StatusOK, "audit", v)
		return
	}
	// The latest checkpoints: look back further until there are enough.
	var cps []audit.StoredCheckpoint
	for back := int64(1024); ; back *= 16 {
		from := max(0, latest.Size-back)
		if cps, err = c.d.Audit.Checkpoints(ctx, from, 1000); err != nil {
			httpError(w, "the checkpoints cannot be read", http.StatusServiceUnavailable)
			return
		}
		if len(cps) >= checkpointsShown || from == 0 {
			break
		}
	}
	cps = cps[max(0, len(cps)-checkpointsShown):]
	cv, err := audit.NewCheckpointVerifier(c.d.Audit.VerifierKey())
	if err != nil {
		httpError(w, "the checkpoint key cannot be read", http.StatusInternalServerError)
		return
	}
	var parsed []audit.Checkpoint
	for _, sc := range slices.Backward(cps) {
		cp, err := cv.Parse(sc.Signed)
		row := checkpointRow{Size: sc.Size, Time: sc.Time.UTC().Format(time.RFC3339), Root: "signature does NOT verify"}
		if err == nil {
			row.Root = base64.StdEncoding.EncodeToString(cp.Root)
			parsed = append(parsed, cp)
		}
		p.Checkpoints = append(p.Checkpoints, row)
	}
	p.Signature = "the latest checkpoint's signature does NOT verify against the log's key"
	if len(parsed) > 0 && parsed[0].Size == latest.Size {
		p.Signature = fmt.Sprintf("the latest checkpoint (%d entries) is signed by the log's key", latest.Size)
		p.Verified = true
	}
	switch {
	case len(parsed) < 2:
		p.Consistency = "one checkpoint so far: nothing to compare"
	default:
		newer, older := parsed[0], parsed[1]
		hashes, err := c.d.Audit.ConsistencyProof(ctx, older.Size, newer.Size)
		if err == nil {
			err = proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(older.Size), uint64(newer.Size), hashes, older.Root, newer.Root)
		}
		if err != nil {
			p.Consistency = fmt.Sprintf("NOT VERIFIED: the log of %d entries does not extend the one of %d: %v", newer.Size, older.Size, err)
			p.Verified = false
		} else {
			p.Consistency = fmt.Sprintf("the log of %d entries extends the one of %d unchanged (consistency proof verified)", newer.Size, older.Size)
		}
	}
	v.Title, v.Page = "Audit log", p
	c.render(w, http.StatusOK, "audit", v)
}

// auditExport streams the whole log as the API's export does.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, v view) {
	w.Header().Set("Content-Disposition", `attachment; filename="warden-audit.ndjson"`)
	c.log.Info("console: audit export", "principal", v.Principal.ID)
	if c.d.API == nil {
		httpError(w, "this console has no admin API to call", http.StatusServiceUnavailable)
		return
	}
	c.d.API(r, v.token, http.MethodGet, "/v1/audit/export", nil, w)
}
