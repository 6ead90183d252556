package record_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/decide/record"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"members", "args.card.number", true},
		{"an element", "args.items[0].password", true},
		{"every element", "args.items[*].password", true},
		{"nested arrays", "args.m[1][*]", true},
		{"any member", "args.*.password", true},
		{"outside args", "context.source.ip", true},
		{"empty", "", false},
		{"empty member", "args..x", false},
		{"trailing dot", "args.", false},
		{"leading index", "[0].x", false},
		{"index without member", "args.[0]", false},
		{"open bracket", "args.items[", false},
		{"unclosed index", "args.items[0", false},
		{"text after index", "args.items[0]x", false},
		{"negative index", "args.items[-1]", false},
		{"leading zero", "args.items[01]", false},
		{"huge index", "args.items[99999999999]", false},
		{"stray bracket", "args.a]b", false},
		{"control character", "args.a\x00b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := record.ParsePath(tc.path)
			if (err == nil) != tc.ok {
				t.Fatalf("ParsePath(%q): %v, want ok=%v", tc.path, err, tc.ok)
			}
			if tc.ok && p.String() != tc.path {
				t.Fatalf("%q reads back as %q", tc.path, p.String())
			}
		})
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"args.card.number", "args.items[*].password", "a[0][1].b", "x.[", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := record.ParsePath(s)
		if err != nil {
			return
		}
		// What parses writes back the same, and parses the same again.
		if p.String() != s {
			t.Fatalf("%q reads back as %q", s, p.String())
		}
	})
}

// decode reads JSON keeping numbers as written, as the pipeline does.
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func recordOf(t *testing.T, cfg record.Config, input string) (record.Record, map[string]any) {
	t.Helper()
	r, err := record.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := decode(t, input)
	raw, err := audit.AppendCanonical(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	before := string(raw)
	rec, err := r.Record(in, raw)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := audit.AppendCanonical(nil, in); string(after) != before {
		t.Fatalf("the input policy saw was changed: %s", after)
	}
	sum := sha256.Sum256(rec.Input)
	if rec.Input != nil && rec.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("the digest %s is not that of the record %s", rec.Digest, rec.Input)
	}
	if rec.Input == nil {
		return rec, nil
	}
	return rec, decode(t, string(rec.Input))
}

func TestRecordRedacts(t *testing.T) {
	t.Parallel()
	const input = `{"action": "tools/call", "context": {"source": {"ip": "10.1.2.3"}},
	  "args": {"user": "ada", "Password": "hunter2", "items": [{"password": "p0", "name": "a"}, {"password": "p1", "name": "b"}],
	           "headers": {"X-Api-Key": "k", "Set-Cookie": "c", "accept": "json"}, "client_secret": "s", "next_token": "page-2",
	           "auth": {"refresh_token": "r", "kind": "oauth"}, "card": {"number": "4111", "brand": "visa"}, "max_tokens": 5}}`
	for _, tc := range []struct {
		name  string
		cfg   record.Config
		want  map[string]string // path (as JSON pointer-ish dotted) -> want
		count int
	}{
		{name: "default keys at any depth", cfg: record.Config{}, want: map[string]string{
			"args.Password": record.Redacted, "args.items.0.password": record.Redacted, "args.items.1.password": record.Redacted,
			"args.items.0.name": "a", "args.headers.X-Api-Key": record.Redacted, "args.headers.Set-Cookie": record.Redacted,
			"args.headers.accept": "json", "args.client_secret": record.Redacted, "args.next_token": record.Redacted,
			"args.auth.refresh_token": record.Redacted, "args.auth.kind": "oauth", "args.user": "ada", "args.max_tokens": "5",
			"context.source.ip": "10.1.2.3"}, count: 8},
		{name: "paths into arrays and outside args", cfg: record.Config{NoDefaultKeys: true, Paths: []string{"args.items[1].password", "args.card.number", "context.source.ip"}},
			want: map[string]string{"args.items.0.password": "p0", "args.items.1.password": record.Redacted, "args.card.number": record.Redacted,
				"args.card.brand": "visa", "context.source.ip": record.Redacted, "args.Password": "hunter2"}, count: 3},
		{name: "a wildcard over the elements", cfg: record.Config{NoDefaultKeys: true, Paths: []string{"args.items[*].password"}},
			want: map[string]string{"args.items.0.password": record.Redacted, "args.items.1.password": record.Redacted, "args.items.1.name": "b"}, count: 2},
		{name: "a wildcard over the members", cfg: record.Config{NoDefaultKeys: true, Paths: []string{"args.*.number"}},
			want: map[string]string{"args.card.number": record.Redacted, "args.card.brand": "visa"}, count: 1},
		{name: "keep exempts a path from the key rule", cfg: record.Config{Keep: []string{"args.next_token"}},
			want: map[string]string{"args.next_token": "page-2", "args.client_secret": record.Redacted}, count: 7},
		{name: "more keys", cfg: record.Config{Keys: []string{"user"}},
			want: map[string]string{"args.user": record.Redacted}, count: 9},
		{name: "nothing", cfg: record.Config{NoDefaultKeys: true}, want: map[string]string{"args.Password": "hunter2"}, count: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, got := recordOf(t, tc.cfg, input)
			for path, want := range tc.want {
				if v := lookup(got, path); v != want {
					t.Errorf("%s: %q, want %q", path, v, want)
				}
			}
			if rec.Redacted != tc.count {
				t.Errorf("%d redacted, want %d", rec.Redacted, tc.count)
			}
			if got := record.Altered(rec.Input); got != (tc.count > 0) {
				t.Errorf("Altered: %v", got)
			}
		})
	}
}

// lookup follows a dotted path of member names and element numbers.
func lookup(v any, path string) string {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := int(k[0] - '0')
			if i >= len(x) {
				return "<missing>"
			}
			v = x[i]
		default:
			return "<missing>"
		}
	}
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	}
	return "<not a scalar>"
}

func TestRecordLimitsSize(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 5000)
	sum := sha256.Sum256([]byte(big))
	t.Run("a large value is its size and digest", func(t *testing.T) {
		t.Parallel()
		rec, got := recordOf(t, record.Config{}, `{"args": {"doc": "`+big+`", "n": "short"}}`)
		want := "[omitted: 5000 bytes, sha256:" + hex.EncodeToString(sum[:]) + "]"
		if v := lookup(got, "args.doc"); v != want || rec.Omitted != 1 || !record.Altered(rec.Input) {
			t.Fatalf("recorded %q (%d omitted), want %q", v, rec.Omitted, want)
		}
	})
	t.Run("large arguments are their size and digest", func(t *testing.T) {
		t.Parallel()
		items := make([]string, 2000)
		for i := range items {
			items[i] = `"item"`
		}
		rec, got := recordOf(t, record.Config{MaxInputBytes: 4096, MaxValueBytes: 1024}, `{"action": "a", "args": {"items": [`+strings.Join(items, ",")+`]}}`)
		if !rec.ArgsOmitted || !strings.HasPrefix(lookup(got, "args"), record.OmittedPrefix) || lookup(got, "action") != "a" || len(rec.Input) > 4096 || rec.Size <= 4096 {
			t.Fatalf("recorded %s (%+v)", rec.Input, rec)
		}
	})
	t.Run("too large without arguments: no input", func(t *testing.T) {
		t.Parallel()
		rec, _ := recordOf(t, record.Config{MaxInputBytes: 4096, MaxValueBytes: 1024}, `{"resource": {"attributes": {"x": "`+big+`"}}, "args": {}}`)
		if rec.Input != nil || rec.Digest == "" {
			t.Fatalf("recorded %d bytes, digest %q", len(rec.Input), rec.Digest)
		}
	})
	t.Run("an input within the limits is recorded as it is", func(t *testing.T) {
		t.Parallel()
		const in = `{"action":"a","args":{"q":"zero trust"}}`
		rec, _ := recordOf(t, record.Config{}, in)
		if string(rec.Input) != in || record.Altered(rec.Input) {
			t.Fatalf("recorded %s", rec.Input)
		}
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  record.Config
		says string
	}{
		{"bad path", record.Config{Paths: []string{"args.items["}}, "redact path"},
		{"bad keep", record.Config{Keep: []string{"args..x"}}, "keep path"},
		{"keep outside args", record.Config{Keep: []string{"context.source.ip"}}, "in args only"},
		{"empty key", record.Config{Keys: []string{"_-"}}, "redact key"},
		{"value limit too small", record.Config{MaxValueBytes: 10}, "largest value"},
		{"value limit over the input limit", record.Config{MaxValueBytes: 8192, MaxInputBytes: 4096}, "largest value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := record.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

func BenchmarkRecord(b *testing.B) {
	r, _ := record.New(record.Config{})
	dec := json.NewDecoder(bytes.NewReader([]byte(`{"action": "tools/call", "agent": {"id": "ai-agent://prod/x", "roles": ["r"]},
	  "args": {"symbol": "ACME", "qty": 10, "account": {"id": "a-1", "api_key": "k"}}, "context": {"session": {"id": "s"}}}`)))
	dec.UseNumber()
	var in map[string]any
	dec.Decode(&in)
	raw, _ := audit.AppendCanonical(nil, in)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Record(in, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// Secret-looking names beyond the plain ones: plurals, prefixes and
// suffixes around the stem (they were recorded, and sent to every SIEM).
func TestDefaultKeysHoldTheStem(t *testing.T) {
	t.Parallel()
	r, err := record.New(record.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key    string
		secret bool
	}{
		{"secret_key", true}, {"SECRET_KEY", true}, {"passwords", true}, {"password_confirmation", true},
		{"api_keys", true}, {"client_secrets", true}, {"private_keys", true}, {"tokens", true},
		{"X-Amz-Signature", true}, {"db_credentials", true}, {"access_token", true},
		{"max_tokens", false}, {"tokenizer", false}, {"token_count", false}, {"name", false}, {"keyword", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if got := record.Secret(r, tc.key); got != tc.secret {
				t.Fatalf("%s: secret %v, want %v", tc.key, got, tc.secret)
			}
		})
	}
}
