package monitor

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// leafSeeds are entries as the log writes them, of every kind the model
// reads, with a gateway decision's input.
func leafSeeds(t testing.TB) [][]byte {
	at := time.Date(2026, 12, 5, 1, 0, 0, 123, time.UTC)
	const a = "ai-agent://prod/finance/trader"
	input := `{"action":"tools/call","agent":{"id":"` + a + `","roles":["trader","reader"],"status":"active"},` +
		`"args":{"to":"x","amount":5,"nested":{"a":[1,2.5e3,-0.1,true,false,null]},"to":"y"},` +
		`"resource":{"id":"mail/send","attributes":{"egress":true,"trust_domain":"partner","upstream":"mail"}},` +
		`"context":{"source":{"ip":"10.1.2.3","region":"eu"},"session":{"taints":["untrusted_content"]},"delegation":["ai-agent://prod/finance/helper"],` +
		`"risk":{"score":0.5,"signals":[]}}}`
	entries := []audit.Entry{
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: a, Reasons: []string{}, DecisionID: "dec_1",
			EnforcementPoint: "mcp-gateway", InputDigest: "sha256:00", LatencyMicros: 120, PolicyVersion: "v1",
			Resource: json.RawMessage(`{"id":"mail/send","kind":"mcp.tool"}`), Input: json.RawMessage(input)},
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "deny", Agent: a, Reasons: []string{"r", "ünïcode \u2028"},
			Resource: json.RawMessage(`{"id":"kb/\"x\"","kind":"mcp.tool"}`)},
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "deny", Reasons: []string{"warden.dpop_invalid"},
			Resource: json.RawMessage(`{"id":"kb/x","kind":"mcp.tool"}`), Input: json.RawMessage(input),
			Detail: json.RawMessage(`{"claimed_agent":{"id":"` + a + `","unverified":"warden.dpop_invalid"},"source":"10.9.9.9"}`)},
		{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: a,
			Input: json.RawMessage(`{"args":"[omitted: 70000 bytes, sha256:00]","context":{"source":{"ip":"10.1.2.3"}}}`)},
		{Kind: audit.KindToken, Action: "token.issue", Outcome: "allow", Agent: a, Detail: json.RawMessage(`{"source":"10.1.2.3"}`)},
		{Kind: audit.KindToken, Action: "token.issue", Outcome: "deny", Reasons: []string{"invalid_client", "replayed"},
			Detail: json.RawMessage(`{"claimed_agent":"` + a + `"}`)},
		{Kind: audit.KindUsage, Action: "usage", Agent: a, Detail: json.RawMessage(`{"bytes":512}`)},
		{Kind: audit.KindAdmin, Action: "agent.status", Actor: "admin:ops", Target: a, Outcome: "done", Detail: json.RawMessage(`{"status":"active"}`)},
		{Kind: audit.KindPolicy, Action: "policy.activate", Outcome: "done"},
	}
	var out [][]byte
	for i, e := range entries {
		e.Time, e.Index = at, int64(i+1)
		if i > 0 {
			e.Prev = "sha256:0f"
		}
		leaf, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, leaf)
	}
	return out
}

// The scanner reads every entry the log writes, and reads it as
// encoding/json does.
func TestScanLeafReadsTheLog(t *testing.T) {
	for i, leaf := range leafSeeds(t) {
		want, wantOK, err := decodeLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := scanLeaf(leaf)
		if err != nil {
			t.Fatalf("entry %d: the scanner gave up on an entry as the log writes it: %v", i, err)
		}
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("entry %d: scanned %+v %v, decoded %+v %v", i, got, ok, want, wantOK)
		}
	}
}

// What encoding/json might read otherwise, the scanner leaves to it.
func TestScanLeafGivesUp(t *testing.T) {
	leaf := string(leafSeeds(t)[0])
	cases := map[string]string{
		"a member twice":                 strings.Replace(leaf, `{"action":`, `{"agent":"ai-agent://prod/x/y","action":`, 1),
		"a member in capitals":           strings.Replace(leaf, `"agent":"ai-agent`, `"AGENT":"ai-agent`, 1),
		"the input named twice":          strings.Replace(leaf, `,"input":{`, `,"input":{"agent":{"roles":["admin"]}},"input":{`, 1),
		"an input field in another case": strings.Replace(leaf, `"roles":`, `"Roles":`, 1),
		"a field with a Kelvin sign":     strings.Replace(leaf, `"kind":"decision"`, "\"\u212aind\":\"decision\"", 1),
		"a string field not a string":    strings.Replace(leaf, `"decision_id":"dec_1"`, `"decision_id":1`, 1),
		"a fractional latency":           strings.Replace(leaf, `"latency_us":120`, `"latency_us":1.5`, 1),
		"attributes named twice":         strings.Replace(leaf, `"attributes":{`, `"attributes":{"egress":true},"attributes":{`, 1),
		"roles not a list":               strings.Replace(leaf, `"roles":["trader","reader"]`, `"roles":"trader"`, 1),
		"trailing bytes":                 leaf + "x",
		"a trailing comma":               strings.Replace(leaf, `"reader"]`, `"reader",]`, 1),
		"a bad number in the arguments":  strings.Replace(leaf, `2.5e3`, `2.e3`, 1),
		"a leading zero":                 strings.Replace(leaf, `"amount":5`, `"amount":05`, 1),
		"a control character":            strings.Replace(leaf, `"region":"eu"`, "\"region\":\"e\x01\"", 1),
		"truncated":                      leaf[:len(leaf)/2],
	}
	for name, b := range cases {
		if b == leaf {
			t.Fatalf("%s: the case changes nothing", name)
		}
		if _, _, err := scanLeaf([]byte(b)); err == nil {
			t.Errorf("%s: scanned", name)
		}
	}
}

// No attribute an enforcement point sends hides the rest of a decision's
// input from the model, live or rebuilt: a number out of float64's range
// once made encoding/json drop the input (both readings), or the scanner
// and encoding/json read one entry two ways.
func TestAttributesHideNothing(t *testing.T) {
	for _, attrs := range []string{`{"foo":1e400,"egress":true}`, `{"egress":1e400}`, `{"egress" : true ,"trust_domain":"partner","n":-1e999}`} {
		e := audit.Entry{Kind: audit.KindDecision, Action: "tools/call", Outcome: "allow", Agent: "ai-agent://prod/a/b", Index: 3,
			Time:  time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC),
			Input: json.RawMessage(`{"agent":{"roles":["bench"]},"args":{"secret_key":1},"resource":{"attributes":` + attrs + `},"context":{"source":{"ip":"10.0.0.1"}}}`)}
		leaf, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		live, ok, err := DecodeLeaf(leaf)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", attrs, ok, err)
		}
		stored, err := audit.DecodeEntry(leaf)
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, _ := Decode(stored)
		slow, _, err := decodeLeaf(leaf)
		if err != nil {
			t.Fatalf("%s: encoding/json: %v", attrs, err)
		}
		for _, ev := range []Event{live, rebuilt, slow} {
			if len(ev.Roles) != 1 || len(ev.ArgKeys) != 1 || ev.SourceIP != "10.0.0.1" || ev.Egress != strings.Contains(attrs, `true`) {
				t.Errorf("%s: read %+v", attrs, ev)
			}
		}
		if !reflect.DeepEqual(live, rebuilt) || !reflect.DeepEqual(live, slow) {
			t.Errorf("%s: live %+v, rebuilt %+v, encoding/json %+v", attrs, live, rebuilt, slow)
		}
	}
}

// Whatever the scanner reads, encoding/json reads the same.
func FuzzDecodeLeaf(f *testing.F) {
	for _, leaf := range leafSeeds(f) {
		f.Add(leaf)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"input":{"resource":{"attributes":{"foo":1e400,"egress":true}}},"agent":"x","kind":"decision","time":"2026-12-05T01:00:00Z"}`))
	f.Add([]byte(`{"input":{"resource":{"attributes":{"egress" : true ,"trust_domain": null}}},"agent":"x","kind":"decision"}`))
	f.Add([]byte(`{"input":{"args":{"a":1,"a":2,"b":{}}},"agent":"x","kind":"decision"}`))
	f.Add([]byte(`{"input":{"resource":{"attributes":{"egress":true,"egress":false}}},"agent":"x","kind":"decision"}`))
	f.Add([]byte(`{"input":{"resource":{"attributes":{"egress":true},"attributes":{"trust_domain":"x"}}},"agent":"x","kind":"decision"}`))
	f.Add([]byte(`{"reasons":["a\u00e9\ud800",null],"agent":"\xff","kind":"decision","time":"2026-12-05T01:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok, err := scanLeaf(b)
		if err != nil {
			return
		}
		want, wantOK, werr := decodeLeaf(b)
		if werr != nil {
			t.Fatalf("scanned what encoding/json refuses (%v): %+v", werr, got)
		}
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("scanned %+v %v, decoded %+v %v", got, ok, want, wantOK)
		}
	})
}
