package audittest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// A reference log for the tamper suite: 60 entries with a checkpoint after
// every 10, and an auditor who kept the newest checkpoint.
const (
	tamperEntries = 60
	tamperEvery   = 10
)

// Tampered is a log as an attacker with write access to its storage, but
// not the checkpoint key, may leave it: entries re-encoded so that each is
// well formed, checksums made right.
type Tampered struct {
	Items []audit.Item
}

// Materialize writes items where the backend under test keeps a log and
// returns the source that `warden audit verify` would read it from.
type Materialize func(t *testing.T, items []audit.Item) audit.Source

// BuildReference appends the reference log through a real Log on b and
// returns its items, as stored, and the auditor's trusted checkpoint.
func BuildReference(t *testing.T, b audit.Backend, s *audit.CheckpointSigner) ([]audit.Item, *audit.Checkpoint) {
	t.Helper()
	l, err := audit.Open(audit.Config{CheckpointEvery: tamperEvery, CheckpointInterval: time.Hour}, b, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < tamperEntries; i++ {
		if _, err := l.Append(ctx, Entry(i)); err != nil {
			t.Fatal(err)
		}
		if (i+1)%tamperEvery == 0 {
			waitCheckpoint(t, l, int64(i+1))
		}
	}
	src, err := l.Items(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var items []audit.Item
	for {
		it, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cv, _ := audit.NewCheckpointVerifier(s.VerifierKey())
	last := items[len(items)-1]
	trusted, err := cv.Parse(last.Data)
	if !last.Checkpoint || err != nil || trusted.Size != tamperEntries {
		t.Fatalf("reference log does not end with a checkpoint of size %d: %v", tamperEntries, err)
	}
	return items, &trusted
}

func waitCheckpoint(t *testing.T, l *audit.Log, size int64) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := l.Checkpoint(context.Background())
		if err == nil && cp.Size == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d", size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// RunTamper checks that, for every kind of tampering, verification of the
// materialized log fails and names the first bad index, and that the
// untouched log verifies.
func RunTamper(t *testing.T, ref []audit.Item, trusted *audit.Checkpoint, s *audit.CheckpointSigner, put Materialize) {
	cv, err := audit.NewCheckpointVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		tamper    func(t *testing.T, items []audit.Item) []audit.Item
		firstBad  int64
		problem   string
		noTrusted bool // the auditor kept no checkpoint
	}{
		{"untouched", func(_ *testing.T, it []audit.Item) []audit.Item { return it }, -1, "", false},
		{"modify", func(t *testing.T, it []audit.Item) []audit.Item {
			return setEntry(t, it, 25, func(e *audit.Entry) { e.Outcome = "allow" + e.Outcome })
		}, 25, "modified", false},
		{"modify the last entry a checkpoint covers", func(t *testing.T, it []audit.Item) []audit.Item {
			return setEntry(t, it, 29, func(e *audit.Entry) { e.Outcome = "allow" })
		}, 29, "entry 29 was modified", false},
		{"modify the newest entry", func(t *testing.T, it []audit.Item) []audit.Item {
			// Nothing follows it: only the checkpoint tells, not where.
			return setEntry(t, it, 59, func(e *audit.Entry) { e.Outcome = "allow" + e.Outcome })
		}, 50, "history rewritten", false},
		{"duplicate", func(_ *testing.T, it []audit.Item) []audit.Item {
			return slices.Insert(it, entryPos(it, 31), it[entryPos(it, 10)])
		}, 31, "duplicate", false},
		{"a changed copy of a checkpointed entry", func(t *testing.T, it []audit.Item) []audit.Item {
			e, err := audit.DecodeEntry(it[entryPos(it, 10)].Data)
			if err != nil {
				t.Fatal(err)
			}
			e.Outcome = "allow" + e.Outcome
			return slices.Insert(it, entryPos(it, 31), audit.Item{Data: canonical(t, e)})
		}, 31, "already under the checkpoint of size 30", false},
		{"rewrite, rechained, up to a checkpoint", func(t *testing.T, it []audit.Item) []audit.Item {
			// Entries 25 to 29 changed and chained again; 30 left alone:
			// the chain breaks at 30, but 29 is not the only change.
			it = setEntry(t, it, 25, func(e *audit.Entry) { e.Outcome = "allow" + e.Outcome })
			for i := 26; i < 30; i++ {
				prev := hex.EncodeToString(audit.LeafHash(it[entryPos(it, i-1)].Data))
				it = setEntry(t, it, i, func(e *audit.Entry) { e.Prev = prev })
			}
			return it
		}, 20, "history rewritten", false},
		{"delete", func(_ *testing.T, it []audit.Item) []audit.Item {
			return slices.Delete(it, entryPos(it, 25), entryPos(it, 25)+1)
		}, 25, "missing", false},
		{"insert", func(t *testing.T, it []audit.Item) []audit.Item {
			forged := Entry(1000)
			forged.Index, forged.Prev = 25, hex.EncodeToString(audit.LeafHash(it[entryPos(it, 24)].Data))
			return slices.Insert(it, entryPos(it, 25), audit.Item{Data: canonical(t, forged)})
		}, 25, "appears again", false},
		{"reorder", func(_ *testing.T, it []audit.Item) []audit.Item {
			i, j := entryPos(it, 25), entryPos(it, 26)
			it[i], it[j] = it[j], it[i]
			return it
		}, 25, "missing", false},
		{"truncate and regrow", func(t *testing.T, it []audit.Item) []audit.Item {
			// Cut at 35 and write 25 new entries, chained and numbered
			// correctly; the checkpoints are kept, as they cannot be re-signed.
			var kept []audit.Item
			var cps []audit.Item
			for _, x := range it {
				if x.Checkpoint {
					cps = append(cps, x)
				} else if len(kept) < 35 {
					kept = append(kept, x)
				}
			}
			prev := audit.LeafHash(kept[34].Data)
			for i := int64(35); i < tamperEntries; i++ {
				e := Entry(int(2000 + i))
				e.Index, e.Prev = i, hex.EncodeToString(prev)
				d := canonical(t, e)
				kept = append(kept, audit.Item{Data: d})
				prev = audit.LeafHash(d)
			}
			return interleave(t, kept, cps, cv)
		}, 30, "history rewritten", false},
		{"truncate and regrow, later checkpoints removed", func(t *testing.T, it []audit.Item) []audit.Item {
			var kept []audit.Item
			for _, x := range it {
				if !x.Checkpoint && len(entries(kept)) < 35 || x.Checkpoint && size(t, cv, x) <= 30 {
					kept = append(kept, x)
				}
			}
			prev := audit.LeafHash(kept[len(kept)-1].Data)
			for i := int64(35); i < tamperEntries; i++ {
				e := Entry(int(3000 + i))
				e.Index, e.Prev = i, hex.EncodeToString(prev)
				d := canonical(t, e)
				kept = append(kept, audit.Item{Data: d})
				prev = audit.LeafHash(d)
			}
			return kept
		}, 30, "trusted checkpoint", false},
		{"forged checkpoint", func(t *testing.T, it []audit.Item) []audit.Item {
			other := Signer(t)
			for k, x := range it {
				if x.Checkpoint && size(t, cv, x) == 40 {
					c, _ := cv.Parse(x.Data)
					signed, err := other.Sign(c.Size, c.Root)
					if err != nil {
						t.Fatal(err)
					}
					it[k].Data = signed
				}
			}
			return it
		}, 40, "does not verify", true},
		{"rewound checkpoint", func(t *testing.T, it []audit.Item) []audit.Item {
			var kept []audit.Item
			for _, x := range it {
				if !x.Checkpoint || size(t, cv, x) <= 40 {
					kept = append(kept, x)
				}
			}
			return kept
		}, 40, "rewound", false},
		{"rewound log", func(t *testing.T, it []audit.Item) []audit.Item {
			var kept []audit.Item
			for _, x := range it {
				if x.Checkpoint && size(t, cv, x) <= 40 || !x.Checkpoint && len(entries(kept)) < 45 {
					kept = append(kept, x)
				}
			}
			return kept
		}, 45, "removed", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items := tc.tamper(t, slices.Clone(ref))
			var tr *audit.Checkpoint
			if !tc.noTrusted {
				tr = trusted
			}
			r, err := audit.Verify(put(t, items), cv, tr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.firstBad < 0 {
				if !r.OK() || r.Entries != tamperEntries {
					t.Fatalf("the untouched log does not verify: %+v", r)
				}
				return
			}
			if r.OK() {
				t.Fatalf("%s went unnoticed: %+v", tc.name, r)
			}
			if r.FirstBad != tc.firstBad || !strings.Contains(r.Problem, tc.problem) {
				t.Fatalf("first bad index %d (%q), want %d and a problem saying %q", r.FirstBad, r.Problem, tc.firstBad, tc.problem)
			}
		})
	}
}

func entryPos(items []audit.Item, index int) int {
	n := 0
	for k, x := range items {
		if !x.Checkpoint {
			if n == index {
				return k
			}
			n++
		}
	}
	panic("no such entry")
}

func entries(items []audit.Item) []audit.Item {
	var out []audit.Item
	for _, x := range items {
		if !x.Checkpoint {
			out = append(out, x)
		}
	}
	return out
}

func size(t *testing.T, cv *audit.CheckpointVerifier, x audit.Item) int64 {
	c, err := cv.Parse(x.Data)
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

// interleave puts each checkpoint after the last entry it covers.
func interleave(t *testing.T, es, cps []audit.Item, cv *audit.CheckpointVerifier) []audit.Item {
	var out []audit.Item
	for i, e := range es {
		out = append(out, e)
		for len(cps) > 0 && size(t, cv, cps[0]) == int64(i+1) {
			out = append(out, cps[0])
			cps = cps[1:]
		}
	}
	return append(out, cps...)
}

func setEntry(t *testing.T, items []audit.Item, index int, edit func(*audit.Entry)) []audit.Item {
	k := entryPos(items, index)
	e, err := audit.DecodeEntry(items[k].Data)
	if err != nil {
		t.Fatal(err)
	}
	edit(e)
	items[k] = audit.Item{Data: canonical(t, e)}
	return items
}

func canonical(t *testing.T, e *audit.Entry) []byte {
	// A fresh copy: Prepare caches the encoding of the fields as they were.
	c := *e
	fresh := audit.Entry{Action: c.Action, Actor: c.Actor, Agent: c.Agent, DecisionID: c.DecisionID, Detail: c.Detail,
		EnforcementPoint: c.EnforcementPoint, Index: c.Index, Input: c.Input, InputDigest: c.InputDigest, Kind: c.Kind,
		LatencyMicros: c.LatencyMicros, Outcome: c.Outcome, PolicyVersion: c.PolicyVersion, Prev: c.Prev,
		Reasons: c.Reasons, Resource: c.Resource, Target: c.Target, Time: c.Time}
	d, err := fresh.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// AsExport writes items as `warden audit export` does and reads them back.
func AsExport(t *testing.T, items []audit.Item) audit.Source {
	var b strings.Builder
	for _, it := range items {
		if it.Checkpoint {
			line, _ := json.Marshal(map[string]string{"checkpoint": string(it.Data)})
			b.Write(line)
		} else {
			b.Write(it.Data)
		}
		b.WriteByte('\n')
	}
	return audit.ReadExport(strings.NewReader(b.String()))
}
