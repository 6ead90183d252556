package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The three runs as encoding/json writes them: the reference the
// hand-written encoder must match byte for byte, since logs already
// written were encoded so, and every entry read back is encoded again and
// compared.
type (
	refBefore struct {
		Action           string          `json:"action"`
		Actor            string          `json:"actor,omitempty"`
		Agent            string          `json:"agent,omitempty"`
		DecisionID       string          `json:"decision_id,omitempty"`
		Detail           json.RawMessage `json:"detail,omitempty"`
		EnforcementPoint string          `json:"enforcement_point,omitempty"`
	}
	refBetween struct {
		Input         json.RawMessage `json:"input,omitempty"`
		InputDigest   string          `json:"input_digest,omitempty"`
		Kind          Kind            `json:"kind"`
		LatencyMicros int64           `json:"latency_us,omitempty"`
		Outcome       string          `json:"outcome,omitempty"`
		PolicyVersion string          `json:"policy_version,omitempty"`
	}
	refAfter struct {
		Reasons  []string        `json:"reasons,omitempty"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Target   string          `json:"target,omitempty"`
		Time     time.Time       `json:"time"`
	}
)

func refRun(t *testing.T, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return b[1 : len(b)-1]
}

func TestPartsAsEncodingJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f",
		"é", "ß", "\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\ufffd", "😀", "日本"}
	str := func() string {
		if rng.IntN(4) == 0 {
			return ""
		}
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	raws := []string{"", `{"a":1}`, "null", `"x\u2028y"`, `[1,2.5,"\"\n"]`, `{"b":{"c":[]},"d":"é"}`, "true", "-0.5e3"}
	raw := func() json.RawMessage {
		r := raws[rng.IntN(len(raws))]
		if r == "" {
			return nil
		}
		c, err := canonicalJSON([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	kinds := []Kind{KindDecision, KindAdmin, KindResponse, KindPolicy, KindToken}
	for i := range 20000 {
		e := &Entry{Action: str(), Actor: str(), Agent: str(), DecisionID: str(), EnforcementPoint: str(), InputDigest: str(),
			Kind: kinds[rng.IntN(len(kinds))], Outcome: str(), PolicyVersion: str(), Target: str(),
			Time: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", 3600*rng.IntN(5)))}
		if rng.IntN(2) == 0 {
			e.LatencyMicros = rng.Int64N(1e6) - 1000
		}
		for range rng.IntN(4) {
			e.Reasons = append(e.Reasons, str())
		}
		if rng.IntN(5) == 0 {
			e.Reasons = []string{}
		}
		r := [3]json.RawMessage{raw(), raw(), raw()}
		got, err := e.encodeParts(r)
		if err != nil {
			t.Fatal(err)
		}
		want := entryParts{
			before:  refRun(t, refBefore{e.Action, e.Actor, e.Agent, e.DecisionID, r[2], e.EnforcementPoint}),
			between: refRun(t, refBetween{r[1], e.InputDigest, e.Kind, e.LatencyMicros, e.Outcome, e.PolicyVersion}),
			after:   refRun(t, refAfter{e.Reasons, r[0], e.Target, e.Time.UTC()}),
		}
		for _, c := range [][2][]byte{{got.before, want.before}, {got.between, want.between}, {got.after, want.after}} {
			if !bytes.Equal(c[0], c[1]) {
				t.Fatalf("entry %d:\n got %q\nwant %q", i, c[0], c[1])
			}
		}
	}
}

// BenchmarkPrepare encodes a decision's entry with a recorded input of
// about 1 KB: the hand-written runs, and encoding/json's as the reference.
func BenchmarkPrepare(b *testing.B) {
	input, _ := canonicalJSON([]byte(`{"action":"tools/call","agent":{"id":"ai-agent://prod/finance/trading-optimizer","roles":["trader"],"trust_domain":"prod","owner":"team-quant","status":"active","attributes":{}},"resource":{"kind":"mcp.tool","id":"market-data/get_quote","attributes":{"read_only":true,"sensitivity":"internal"}},"args":{"symbol":"ACME","qty":100},"context":{"time":"2026-12-05T10:00:00Z","source":{"ip":"10.1.2.3","region":"eu-west"},"risk":{"score":0,"level":"low","signals":[],"learning":true,"stale":false},"session":{"id":"s-1","taints":[]},"grants":[],"delegation":[],"approvals":[],"provenance":{"read_untrusted":false,"forgotten":false}}}`))
	resource := json.RawMessage(`{"id":"market-data/get_quote","kind":"mcp.tool"}`)
	detail := json.RawMessage(`{"obligations":{},"taints_set":[]}`)
	entry := func() *Entry {
		return &Entry{Kind: KindDecision, Action: "tools/call", Agent: "ai-agent://prod/finance/trading-optimizer", DecisionID: "dec_0123456789abcdef",
			EnforcementPoint: "finance-gw", Outcome: "allow", PolicyVersion: "sha256:5e1f", Time: time.Now(), LatencyMicros: 412,
			Resource: resource, Input: input, Detail: detail, Reasons: []string{"a_reason"}}
	}
	b.Run("runs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := entry().Prepare(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		t := &testing.T{}
		for b.Loop() {
			e := entry()
			refRun(t, refBefore{e.Action, e.Actor, e.Agent, e.DecisionID, e.Detail, e.EnforcementPoint})
			refRun(t, refBetween{e.Input, e.InputDigest, e.Kind, e.LatencyMicros, e.Outcome, e.PolicyVersion})
			refRun(t, refAfter{e.Reasons, e.Resource, e.Target, e.Time.UTC()})
		}
	})
}

// TestLeafSizeIsTheCanonicalLength: the size checked before an entry is
// queued is the length of the leaf Canonical writes, for any index and
// with or without prev, and the limit is refused at it.
func TestLeafSizeIsTheCanonicalLength(t *testing.T) {
	for _, c := range []struct {
		index int64
		prev  string
		input string
	}{
		{0, "", `{"a":1}`},
		{9, "", ""},
		{10, strings.Repeat("ab", 32), `{"b":"\u003c"}`},
		{-1, "", `[1,2]`},
		{1 << 40, strings.Repeat("0", 64), `{"z":[{"y":"é"}]}`},
	} {
		e := &Entry{Kind: KindDecision, Action: "tools/call", Time: time.Unix(1, 5), Index: c.index, Prev: c.prev, Reasons: []string{"r"}}
		if c.input != "" {
			e.Input = json.RawMessage(c.input)
		}
		n, err := e.leafSize()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if n != len(leaf) {
			t.Errorf("index %d prev %q: leafSize %d, the leaf is %d bytes", c.index, c.prev, n, len(leaf))
		}
	}
	e := &Entry{Kind: KindDecision, Action: "tools/call", Time: time.Unix(1, 0)}
	n, _ := e.leafSize()
	e = &Entry{Kind: KindDecision, Action: "tools/call", Time: time.Unix(1, 0),
		Input: json.RawMessage(`"` + strings.Repeat("x", MaxEntrySize-n-len(`,"input":""`)) + `"`)}
	if n, err := e.leafSize(); err != nil || n != MaxEntrySize {
		t.Fatalf("an entry of exactly the limit: %d, %v", n, err)
	}
	e = &Entry{Kind: KindDecision, Action: "tools/call", Time: time.Unix(1, 0),
		Input: json.RawMessage(`"` + strings.Repeat("x", MaxEntrySize) + `"`)}
	if _, err := e.leafSize(); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("an entry over the limit: %v", err)
	}
}

// TestPeekEntryReadsTheFields: PeekEntry reads every field DecodeEntry
// reads from an entry as the log writes it, and refuses what is not JSON.
func TestPeekEntryReadsTheFields(t *testing.T) {
	e := &Entry{Kind: KindDecision, Action: "tools/call", Actor: "a", Agent: "ai-agent://prod/x/y", DecisionID: "dec_1",
		EnforcementPoint: "gw", InputDigest: "d", Outcome: "deny", PolicyVersion: "v", Target: "t", Reasons: []string{"r1", "r2"},
		LatencyMicros: 17, Index: 4, Prev: strings.Repeat("ab", 32), Time: time.Unix(1700000000, 5).UTC(),
		Resource: json.RawMessage(`{"id":"kb/x","kind":"mcp.tool"}`), Input: json.RawMessage(`{"a":[1,"<"]}`), Detail: json.RawMessage(`{"b":true}`)}
	leaf, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want, err := DecodeEntry(leaf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PeekEntry(leaf)
	if err != nil {
		t.Fatal(err)
	}
	want.parts = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PeekEntry read %+v, DecodeEntry %+v", got, want)
	}
	if _, err := PeekEntry([]byte(`{"action":`)); !errors.Is(err, ErrBadEntry) {
		t.Errorf("a cut entry: %v", err)
	}
}
