// Package audittest is the conformance suite for audit log backends: the
// same behaviours, checked on the embedded file log and on PostgreSQL.
package audittest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/warden-run/warden/internal/audit"
)

// Factory makes a new, empty log for one test and returns what opens it.
// Opening again after closing gives the same log, as after a restart.
type Factory func(t *testing.T) (open func(t *testing.T) audit.Backend)

// Signer makes a checkpoint signer for tests.
func Signer(t testing.TB) *audit.CheckpointSigner {
	t.Helper()
	skey, _, err := audit.NewCheckpointKey("warden.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewCheckpointSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// OpenLog opens a Log over b that checkpoints often, and closes it when the test ends.
func OpenLog(t testing.TB, b audit.Backend, s *audit.CheckpointSigner) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Config{CheckpointEvery: 10, CheckpointInterval: 50 * time.Millisecond}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Entry makes a test entry.
func Entry(n int) *audit.Entry {
	kinds := []audit.Kind{audit.KindDecision, audit.KindAdmin, audit.KindResponse, audit.KindPolicy}
	outcomes := []string{"allow", "deny"}
	return &audit.Entry{
		Time: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second),
		Kind: kinds[n%4], Agent: fmt.Sprintf("ai-agent://prod/a%d", n%3), Action: fmt.Sprintf("act-%d", n),
		Outcome: outcomes[n%2], Detail: []byte(fmt.Sprintf(`{"n":%d}`, n)),
	}
}

// AppendN appends n entries from as many goroutines and returns them by index.
func AppendN(t testing.TB, l *audit.Log, n int) map[int64]*audit.Entry {
	t.Helper()
	var mu sync.Mutex
	out := make(map[int64]*audit.Entry, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry(i)
			idx, err := l.Append(context.Background(), e)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			out[idx] = e
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// WaitIntegrated waits until the tree and a checkpoint cover every entry.
func WaitIntegrated(t testing.TB, l *audit.Log) audit.StoredCheckpoint {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		size, _ := l.Size(ctx)
		cp, err := l.Checkpoint(ctx)
		if err == nil && cp.Size == size {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers all %d entries after 10s (latest: %d, %v)", size, cp.Size, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run runs the suite.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"concurrent appends get consecutive indexes and a chain", testAppend},
		{"checkpoints and proofs verify with the upstream package", testProofs},
		{"a reopened log continues where it stopped", testReopen},
		{"query filters and pages", testQuery},
		{"cursors", testCursors},
		{"an untouched log verifies, live and exported", testVerifyUntouched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, f)
		})
	}
}

func testAppend(t *testing.T, f Factory) {
	l := OpenLog(t, f(t)(t), Signer(t))
	got := AppendN(t, l, 200)
	if len(got) != 200 {
		t.Fatalf("%d distinct indexes for 200 appends", len(got))
	}
	// Nested JSON that is not JSON, or has more after it, is refused with
	// the field named, and nothing is written.
	for name, bad := range map[string]*audit.Entry{
		"input":    {Input: json.RawMessage(`{"a":1} {}`)},
		"detail":   {Detail: json.RawMessage(`{"a":`)},
		"resource": {Resource: json.RawMessage(`{"a":01}`)},
	} {
		bad.Kind, bad.Action, bad.Time = audit.KindDecision, "tools/call", time.Now()
		if _, err := l.AppendDurable(context.Background(), bad); !errors.Is(err, audit.ErrBadEntry) || !strings.Contains(err.Error(), name) {
			t.Errorf("an entry with malformed %s: %v, want ErrBadEntry naming it", name, err)
		}
	}
	if n, err := l.Size(context.Background()); err != nil || n != 200 {
		t.Fatalf("the log holds %d entries after the refusals (%v), want 200", n, err)
	}
	data, err := l.Read(context.Background(), 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	for i, d := range data {
		e, err := audit.DecodeEntry(d)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want := got[int64(i)]
		if e.Index != int64(i) || want == nil || e.Action != want.Action || !e.Time.Equal(want.Time) {
			t.Fatalf("entry %d: %+v, appended as %+v", i, e, want)
		}
		if i > 0 && e.Prev != hex.EncodeToString(prev) {
			t.Fatalf("entry %d does not chain to %d", i, i-1)
		}
		prev = audit.LeafHash(d)
	}
}

func testProofs(t *testing.T, f Factory) {
	s := Signer(t)
	l := OpenLog(t, f(t)(t), s)
	AppendN(t, l, 37)
	first := WaitIntegrated(t, l)
	AppendN(t, l, 50)
	cp := WaitIntegrated(t, l)
	ctx := context.Background()
	cv, err := audit.NewCheckpointVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cv.Parse(cp.Signed)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := cv.Parse(first.Signed)
	if err != nil {
		t.Fatal(err)
	}
	// Every inclusion proof verifies with transparency-dev/merkle/proof alone.
	h := rfc6962.DefaultHasher
	for i := int64(0); i < c.Size; i++ {
		p, data, err := l.InclusionProof(ctx, i, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(h, uint64(i), uint64(c.Size), h.HashLeaf(data), p, c.Root); err != nil {
			t.Fatalf("inclusion of %d in %d: %v", i, c.Size, err)
		}
	}
	// And the consistency proof between the two checkpoints.
	p, err := l.ConsistencyProof(ctx, c1.Size, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(h, uint64(c1.Size), uint64(c.Size), p, c1.Root, c.Root); err != nil {
		t.Fatalf("consistency %d -> %d: %v", c1.Size, c.Size, err)
	}
	// A wrong leaf does not verify.
	p, _, _ = l.InclusionProof(ctx, 3, c.Size)
	if proof.VerifyInclusion(h, 3, uint64(c.Size), h.HashLeaf([]byte("forged")), p, c.Root) == nil {
		t.Fatal("a forged leaf verified")
	}
	if _, _, err := l.InclusionProof(ctx, c.Size, c.Size); err == nil {
		t.Fatal("a proof for an index beyond the tree")
	}
}

func testReopen(t *testing.T, f Factory) {
	s := Signer(t)
	open := f(t)
	b := open(t)
	l, err := audit.Open(audit.Config{CheckpointEvery: 10, CheckpointInterval: 50 * time.Millisecond}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	AppendN(t, l, 25)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = open(t)
	l = OpenLog(t, b, s)
	ctx := context.Background()
	cp, err := l.Checkpoint(ctx)
	if err != nil || cp.Size != 25 {
		t.Fatalf("checkpoint after reopening: size %d, %v (closing signs one covering everything)", cp.Size, err)
	}
	AppendN(t, l, 5)
	WaitIntegrated(t, l)
	report := verifyLive(t, l, s)
	if !report.OK() || report.Entries != 30 {
		t.Fatalf("after reopening: %+v", report)
	}
}

func verifyLive(t testing.TB, l *audit.Log, s *audit.CheckpointSigner) *audit.Report {
	t.Helper()
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	src, err := l.Items(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Verify(src, cv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testQuery(t *testing.T, f Factory) {
	l := OpenLog(t, f(t)(t), Signer(t))
	for i := range 40 {
		e := Entry(i)
		if e.Kind == audit.KindDecision {
			e.DecisionID = fmt.Sprintf("dec_%d", i)
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	q := func(q audit.Query) []int64 {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 100
		}
		res, _, err := l.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range res {
			out = append(out, r.Entry.Index)
		}
		return out
	}
	if got := q(audit.Query{After: -1, Kind: audit.KindAdmin, Outcome: "deny"}); len(got) != 10 || got[0] != 1 {
		t.Fatalf("admin denials: %v", got)
	}
	if got := q(audit.Query{After: -1, DecisionID: "dec_12"}); len(got) != 1 || got[0] != 12 {
		t.Fatalf("decision dec_12: %v", got)
	}
	if got := q(audit.Query{After: -1, Agent: "ai-agent://prod/a1"}); len(got) != 13 || got[0] != 1 {
		t.Fatalf("agent a1: %v", got)
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 10, 0, time.UTC)
	if got := q(audit.Query{After: -1, Since: t0, Until: t0.Add(5 * time.Second)}); len(got) != 5 || got[0] != 10 {
		t.Fatalf("time range: %v", got)
	}
	var paged []int64
	after := int64(-1)
	for {
		res, last, err := l.Query(ctx, audit.Query{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			paged = append(paged, r.Entry.Index)
		}
		if len(res) < 7 {
			break
		}
		after = last
	}
	if len(paged) != 40 || paged[39] != 39 {
		t.Fatalf("paged: %v", paged)
	}
	res, _, _ := l.Query(ctx, audit.Query{After: 4, Limit: 1})
	if len(res) != 1 || !bytes.Equal(res[0].Data, mustRead(t, l, 5)) {
		t.Fatal("query data differs from the stored entry")
	}
}

func mustRead(t testing.TB, l *audit.Log, i int64) []byte {
	d, err := l.Read(context.Background(), i, i+1)
	if err != nil {
		t.Fatal(err)
	}
	return d[0]
}

func testCursors(t *testing.T, f Factory) {
	open := f(t)
	b := open(t)
	ctx := context.Background()
	if n, err := b.Cursor(ctx, "syslog"); err != nil || n != 0 {
		t.Fatalf("new cursor: %d %v", n, err)
	}
	if err := b.SetCursor(ctx, "syslog", 42); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = open(t)
	if n, err := b.Cursor(ctx, "syslog"); err != nil || n != 42 {
		t.Fatalf("cursor after reopening: %d %v", n, err)
	}
	if err := b.SetCursor(ctx, "../etc", 1); err == nil {
		t.Fatal("a cursor name with a path was accepted")
	}
}

func testVerifyUntouched(t *testing.T, f Factory) {
	s := Signer(t)
	l := OpenLog(t, f(t)(t), s)
	AppendN(t, l, 120)
	WaitIntegrated(t, l)
	if r := verifyLive(t, l, s); !r.OK() || r.Entries != 120 || r.Checkpoints == 0 || r.Uncovered != 0 {
		t.Fatalf("live: %+v", r)
	}
	var buf bytes.Buffer
	if err := audit.Export(context.Background(), &buf, l); err != nil {
		t.Fatal(err)
	}
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	r, err := audit.Verify(audit.ReadExport(&buf), cv, nil)
	if err != nil || !r.OK() || r.Entries != 120 {
		t.Fatalf("export: %+v %v", r, err)
	}
}

// NoteSize is the tree size a signed checkpoint states, read without
// checking its signature (as someone writing a tampered log would).
func NoteSize(t testing.TB, signed []byte) int64 {
	t.Helper()
	text, _ := audit.SplitNote(signed)
	c, err := audit.ParseCheckpointBody(text)
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

// BenchAppend measures durable appends to l from 16 goroutines (8 per
// CPU on 2 cores) and reports appends per second.
func BenchAppend(b *testing.B, l *audit.Log) {
	ctx := context.Background()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := l.Append(ctx, Entry(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
