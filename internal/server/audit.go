package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// auditCheckpoint serves the latest signed checkpoint as a signed note.
// Public: a checkpoint reveals only the log's size and root hash.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.d.Audit.Checkpoint(r.Context())
	if errors.Is(err, audit.ErrNoCheckpoint) {
		writeError(w, http.StatusNotFound, "not_found", "no checkpoint has been signed yet")
		return
	}
	if err != nil {
		s.adminError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(cp.Signed)
}

// auditKey serves the note verifier key of the log's checkpoints.
func (s *Server) auditKey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write([]byte(s.d.Audit.VerifierKey() + "\n"))
}

func (s *Server) auditCheckpoints(w http.ResponseWriter, r *http.Request, actor string) {
	from, err := queryInt(r, "from", 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	cps, err := s.d.Audit.Checkpoints(r.Context(), from, 1000)
	if err != nil {
		s.adminError(w, err)
		return
	}
	type view struct {
		Size   int64     `json:"size"`
		Time   time.Time `json:"time"`
		Signed string    `json:"checkpoint"`
	}
	out := []view{}
	for _, c := range cps {
		out = append(out, view{c.Size, c.Time, string(c.Signed)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"checkpoints": out})
}

// auditEntries lists entries, filtered, a page at a time.
func (s *Server) auditEntries(w http.ResponseWriter, r *http.Request, actor string) {
	q := r.URL.Query()
	query := audit.Query{Agent: q.Get("agent"), Kind: audit.Kind(q.Get("kind")), Outcome: q.Get("outcome"), DecisionID: q.Get("decision"), After: -1, Limit: 100}
	var err error
	if query.After, err = queryInt(r, "after", -1); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	limit, err := queryInt(r, "limit", 100)
	if err != nil || limit < 1 || limit > 1000 {
		writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 1000")
		return
	}
	query.Limit = int(limit)
	for name, dst := range map[string]*time.Time{"since": &query.Since, "until": &query.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", name+" must be an RFC 3339 time")
				return
			}
			*dst = t
		}
	}
	if query.Kind != "" && !validKind(query.Kind) {
		writeError(w, http.StatusBadRequest, "invalid_request", "kind must be decision, admin, response or policy")
		return
	}
	res, last, err := s.d.Audit.Query(r.Context(), query)
	if err != nil {
		s.adminError(w, err)
		return
	}
	// A page is bounded in bytes too: entries may be large (an agent
	// choosing large arguments), and a client reads a page whole.
	entries := make([]json.RawMessage, 0, len(res))
	bytes := 0
	for i, e := range res {
		if i > 0 && bytes+len(e.Data) > maxPageBytes {
			last = res[i-1].Entry.Index
			break
		}
		bytes += len(e.Data)
		entries = append(entries, e.Data)
	}
	size, _ := s.d.Audit.Size(r.Context())
	out := map[string]any{"entries": entries, "size": size}
	if last+1 < size {
		out["next"] = strconv.FormatInt(last, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// maxPageBytes bounds the entries of one page of GET /v1/audit/entries.
const maxPageBytes = 4 << 20

func validKind(k audit.Kind) bool {
	switch k {
	case audit.KindDecision, audit.KindAdmin, audit.KindResponse, audit.KindPolicy, audit.KindToken, audit.KindUsage:
		return true
	}
	return false
}

// auditExport streams the whole log as JSON lines, checkpoints included,
// for `warden audit export` and offline verification.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, actor string) {
	// A large log takes longer than the server's write timeout: lift it for
	// this response, which ends when the export does or the client goes.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	if err := audit.Export(r.Context(), w, s.d.Audit); err != nil {
		s.log.Error("audit export failed midway", "err", err)
		// The answer is cut off, not ended: a client must not take a
		// part of the log for the whole (a clean end would look like one).
		panic(http.ErrAbortHandler)
	}
}

type inclusionView struct {
	Index    int64           `json:"index"`
	Size     int64           `json:"size"`
	LeafHash string          `json:"leaf_hash"`
	Entry    json.RawMessage `json:"entry"`
	Proof    []string        `json:"proof"`
}

type consistencyView struct {
	From  int64    `json:"from"`
	To    int64    `json:"to"`
	Proof []string `json:"proof"`
}

func b64(hashes [][]byte) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request, actor string) {
	index, err1 := queryInt(r, "index", -1)
	size, err2 := queryInt(r, "size", -1)
	if err := errors.Join(err1, err2); err != nil || index < 0 || size < 1 {
		writeError(w, http.StatusBadRequest, "invalid_request", "index and size are required whole numbers")
		return
	}
	p, data, err := s.d.Audit.InclusionProof(r.Context(), index, size)
	if err != nil {
		s.auditError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inclusionView{Index: index, Size: size, Entry: data,
		LeafHash: base64.StdEncoding.EncodeToString(audit.LeafHash(data)), Proof: b64(p)})
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, actor string) {
	from, err1 := queryInt(r, "from", -1)
	to, err2 := queryInt(r, "to", -1)
	if err := errors.Join(err1, err2); err != nil || from < 0 || to < 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "from and to are required whole numbers")
		return
	}
	p, err := s.d.Audit.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		s.auditError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, consistencyView{From: from, To: to, Proof: b64(p)})
}

func (s *Server) auditError(w http.ResponseWriter, err error) {
	if errors.Is(err, audit.ErrBadRange) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.adminError(w, err)
}

func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New(name + " must be a whole number")
	}
	return n, nil
}

// auditLineage answers GET /v1/audit/lineage?decision=ID: the decision's
// entry and the entries it links to (detail.lineage), each with its
// inclusion proof against the latest checkpoint, which is in the answer.
func (s *Server) auditLineage(w http.ResponseWriter, r *http.Request, actor string) {
	id := r.URL.Query().Get("decision")
	if id == "" || len(id) > 128 {
		writeError(w, http.StatusBadRequest, "invalid_request", "decision: the decision id")
		return
	}
	cp, err := s.d.Audit.Checkpoint(r.Context())
	if err != nil {
		s.auditError(w, err)
		return
	}
	// The decision, found in pages (a log without indexes reads a bounded
	// stretch per query).
	var decision *audit.Entry
	for after := int64(-1); decision == nil; {
		res, last, err := s.d.Audit.Query(r.Context(), audit.Query{DecisionID: id, Kind: audit.KindDecision, After: after, Limit: 1})
		if err != nil {
			s.adminError(w, err)
			return
		}
		if len(res) > 0 {
			decision = res[0].Entry
			break
		}
		if last <= after || last+1 >= cp.Size {
			writeError(w, http.StatusNotFound, "not_found", "no decision "+id+" under the latest checkpoint")
			return
		}
		after = last
	}
	if decision.Index >= cp.Size {
		writeError(w, http.StatusConflict, "not_yet", "the decision is not yet under a checkpoint; ask again in a moment")
		return
	}
	var detail struct {
		Lineage *struct {
			Reads     []int64 `json:"reads"`
			Untrusted []int64 `json:"untrusted_reads"`
			Evicted   int     `json:"evicted"`
		} `json:"lineage"`
	}
	json.Unmarshal(decision.Detail, &detail)
	type link struct {
		Role string `json:"role"`
		inclusionView
	}
	var links []link
	add := func(index int64, role string) bool {
		p, data, err := s.d.Audit.InclusionProof(r.Context(), index, cp.Size)
		if err != nil {
			s.auditError(w, err)
			return false
		}
		links = append(links, link{Role: role, inclusionView: inclusionView{Index: index, Size: cp.Size, Entry: data,
			LeafHash: base64.StdEncoding.EncodeToString(audit.LeafHash(data)), Proof: b64(p)}})
		return true
	}
	if !add(decision.Index, "decision") {
		return
	}
	out := map[string]any{"decision": id, "checkpoint": string(cp.Signed), "lineage": nil}
	if l := detail.Lineage; l != nil {
		out["lineage"] = l
		for _, i := range l.Reads {
			if !add(i, "source") {
				return
			}
		}
		for _, i := range l.Untrusted {
			if !slices.Contains(l.Reads, i) && !add(i, "untrusted") {
				return
			}
		}
	}
	out["entries"] = links
	writeJSON(w, http.StatusOK, out)
}
