package provenance

import (
	"strings"
	"testing"
)

var sample = strings.Repeat("Dear Ada, the invoice INV-2291 of $1,234.50 is due on Friday. Pay to DE89 3704 0044 0532 0130 00 "+
	"or see https://bills.example/pay/2291. Questions: billing@acme.example or +41 44 668 1800. ", 10)

// BenchmarkFromString: extraction from a 2 KB result, the cost of one read.
func BenchmarkFromString(b *testing.B) {
	b.SetBytes(int64(len(sample)))
	for b.Loop() {
		FromString(sample)
	}
}

// BenchmarkArgs: the provenance of a call's arguments against 64 reads.
func BenchmarkArgs(b *testing.B) {
	s := NewStore(1, 0).Session("a", "")
	for i := range 64 {
		s.Record(Read{Upstream: "mail", Trust: Untrusted, AuditIndex: int64(i)}, sample, nil)
	}
	args := map[string]any{"to": "billing@acme.example", "amount": 1234.5, "iban": "DE89370400440532013000", "note": "March rent"}
	for b.Loop() {
		s.Args(args)
	}
}

// BenchmarkArgsTypical: a call's four arguments against eight reads of
// different content, a task's worth.
func BenchmarkArgsTypical(b *testing.B) {
	s := NewStore(1, 0).Session("a", "")
	for i := range 8 {
		s.Record(Read{Upstream: "mail", Trust: Untrusted, AuditIndex: int64(i)},
			strings.ReplaceAll(sample[:400], "2291", strings.Repeat("7", i+1)), nil)
	}
	args := map[string]any{"to": "billing@acme.example", "amount": 1234.5, "iban": "DE89370400440532013000", "note": "March rent"}
	for b.Loop() {
		s.Args(args)
	}
}

// BenchmarkSmallCall: what the MCP gateway does for a small call of a
// trusted tool (bench/gateway-overhead.sh's): where its arguments came
// from, then its result, the answer to it, recorded as a read.
func BenchmarkSmallCall(b *testing.B) {
	s := NewStore(1, 0).Session("a", "")
	args := map[string]any{"symbol": "ACME"}
	result := map[string]any{"content": []any{map[string]any{"type": "text", "text": "ACME 101.5"}}}
	b.ReportAllocs()
	for b.Loop() {
		s.Args(args)
		s.Record(Read{Upstream: "market", Tool: "get_quote", Trust: Trusted, AuditIndex: 5}, result, args)
	}
}
