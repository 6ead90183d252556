package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/warden-run/warden/internal/tracing"
)

// An agent controls its traceparent, sampled flag included: with a ratio
// of 0, a request that says "sampled" is not recorded (or exported), and
// with 1, one that says "not sampled" is, in the agent's trace.
func TestAgentsDoNotChooseSampling(t *testing.T) {
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer otlp.Close()
	for _, c := range []struct {
		name, flags string
		ratio       float64
		recorded    bool
	}{{"sampled by the agent, ratio 0", "01", 0, false}, {"not sampled by the agent, ratio 1", "00", 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			stop, err := tracing.Start(tracing.Config{Endpoint: otlp.URL, SampleRatio: &c.ratio})
			if err != nil {
				t.Fatal(err)
			}
			defer stop(context.Background())
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"+c.flags)
			_, span := tracing.Tracer().Start(tracing.FromRequest(context.Background(), r), "call")
			defer span.End()
			if span.IsRecording() != c.recorded {
				t.Fatalf("recorded %v, want %v", span.IsRecording(), c.recorded)
			}
			if got := span.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatalf("the agent's trace id was not kept: %s", got)
			}
		})
	}
}

// BenchmarkSpanOff is what a span costs with tracing off (docs/observability.md).
func BenchmarkSpanOff(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := tracing.Tracer().Start(ctx, "call")
		span.End()
	}
}
