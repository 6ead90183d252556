package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleEntry() *Entry {
	return &Entry{
		Index: 7, Prev: strings.Repeat("ab", 32), Time: time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC),
		Kind: KindDecision, Agent: "ai-agent://prod/finance/trader", Action: "tools/call",
		Resource: json.RawMessage(`{"kind":"mcp.tool", "id":"market-data/get_quote", "attributes":{"z":1,"a":"<&>"}}`),
		Outcome:  "deny", Reasons: []string{"market closed"}, DecisionID: "d-1", PolicyVersion: "sha256:00",
		Input: json.RawMessage(`{"b":[1,2.50,{"y":null,"x":true}],"a":"é"}`), LatencyMicros: 42,
	}
}

func TestCanonicalForm(t *testing.T) {
	t.Parallel()
	b, err := sampleEntry().Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"action":"tools/call","agent":"ai-agent://prod/finance/trader","decision_id":"d-1","index":7,` +
		`"input":{"a":"é","b":[1,2.50,{"x":true,"y":null}]},"kind":"decision","latency_us":42,"outcome":"deny",` +
		`"policy_version":"sha256:00","prev":"` + strings.Repeat("ab", 32) + `","reasons":["market closed"],` +
		`"resource":{"attributes":{"a":"<&>","z":1},"id":"market-data/get_quote","kind":"mcp.tool"},` +
		`"time":"2026-11-27T10:00:00.000000123Z"}`
	if string(b) != want {
		t.Fatalf("canonical form:\n got %s\nwant %s", b, want)
	}
	// Keys in byte order at every level, whatever the struct or input said.
	var top map[string]json.RawMessage
	json.Unmarshal(b, &top)
	e, err := DecodeEntry(b)
	if err != nil {
		t.Fatalf("decode of the canonical form: %v", err)
	}
	again, _ := e.Canonical()
	if string(again) != string(b) {
		t.Fatal("canonical form does not round-trip")
	}
}

func TestDecodeEntryRefusals(t *testing.T) {
	t.Parallel()
	good, _ := sampleEntry().Canonical()
	s := string(good)
	cases := map[string]string{
		"whitespace":        strings.Replace(s, `"index":7`, `"index": 7`, 1),
		"keys out of order": strings.Replace(s, `{"action":"tools/call","agent"`, `{"agent":"ai-agent://prod/finance/trader","action"`, 1),
		"unknown field":     strings.Replace(s, `{"action"`, `{"a":1,"action"`, 1),
		"unknown kind":      strings.Replace(s, `"kind":"decision"`, `"kind":"gossip"`, 1),
		"no action":         strings.Replace(s, `"action":"tools/call",`, ``, 1),
		"negative index":    strings.Replace(s, `"index":7`, `"index":-7`, 1),
		"bad prev":          strings.Replace(s, `"prev":"ab`, `"prev":"AB`, 1),
		"escaped html":      strings.Replace(s, `"a":"<&>"`, `"a":"\u003c&>"`, 1),
		"trailing data":     s + ` {}`,
		"not json":          "{",
		"empty":             "",
	}
	for name, in := range cases {
		if _, err := DecodeEntry([]byte(in)); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: %v, want ErrBadEntry", name, err)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	good, _ := sampleEntry().Canonical()
	f.Add(good)
	f.Add([]byte(`{"action":"a","index":0,"kind":"admin","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error not wrapping ErrBadEntry: %v", err)
			}
			return
		}
		// Whatever decodes is canonical: encoding it again gives the same bytes.
		again, err := e.Canonical()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted %q, which encodes as %q (%v)", b, again, err)
		}
	})
}

// Bytes that are not UTF-8 reach entries from requests (a path's %FF,
// through a policy reason built from it): the entry is written with the
// replacement character and reads back, and the caller's reasons stay as
// they were. Before, it failed its own canonical check and no reader
// (the monitor, lineage, exports) could decode it.
func TestEntryWithBytesThatAreNotUTF8ReadsBack(t *testing.T) {
	t.Parallel()
	res, _ := json.Marshal(map[string]string{"kind": "http.route", "id": "api/deny\xff"})
	reasons := []string{"ok", "blocked api/deny\xff"}
	e := &Entry{Kind: KindDecision, Time: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), DecisionID: "dec_\xfe", Action: "http:GET\xff",
		EnforcementPoint: "gw", Resource: res, Outcome: "deny", Reasons: reasons, Agent: "ai-agent://dev/x", Target: "t\xff"}
	e.Detail, _ = json.Marshal(map[string]any{"x": "a\xff"})
	b, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeEntry(b)
	if err != nil {
		t.Fatalf("the entry does not read back: %v\n%q", err, b)
	}
	if back.Reasons[1] != "blocked api/deny\uFFFD" || back.Action != "http:GET\uFFFD" || back.Target != "t\uFFFD" {
		t.Errorf("read back: %q %q %q", back.Reasons, back.Action, back.Target)
	}
	if reasons[1] != "blocked api/deny\xff" {
		t.Error("the caller's reasons were changed")
	}
}
