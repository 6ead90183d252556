// Package tracing exports OpenTelemetry traces of agents' actions over
// OTLP: one trace per action, across the enforcement point, the decision
// and the upstream call, with the decision id on the decision's span. Off
// unless an endpoint is configured; then W3C trace context is read from
// agents' requests and passed to upstreams.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Warden's spans.
const Name = "github.com/warden-run/warden"

// Config configures trace export.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL
	// (http://collector:4318); traces go to <Endpoint>/v1/traces. Empty
	// turns tracing off.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of traces kept, 0 to 1 (default 1),
	// decided by trace id: an agent's traceparent cannot ask for more.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// Headers are sent with every export (a collector's API key).
	Headers map[string]string `yaml:"headers"`
}

// Check says what is wrong with c.
func (c Config) Check() error {
	if c.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("tracing.endpoint %q: want the collector's http:// or https:// URL", c.Endpoint)
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		return fmt.Errorf("tracing.sample_ratio %v: want 0 to 1", *r)
	}
	return nil
}

// Start installs a tracer provider that exports to c.Endpoint, as the
// process's, and the W3C propagators; the returned function flushes and
// stops it. With no endpoint it does nothing: spans are then no-ops that
// cost about 0.25 µs and three small allocations (BenchmarkSpanOff).
func Start(c Config) (stop func(context.Context) error, err error) {
	if c.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint + "/v1/traces"), otlptracehttp.WithTimeout(10 * time.Second)}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	ratio := 1.0
	if c.SampleRatio != nil {
		ratio = *c.SampleRatio
	}
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	res := resource.NewSchemaless(attribute.String("service.name", "warden"), attribute.String("service.version", version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res),
		// A parent from outside (an agent's traceparent) does not choose:
		// an agent that marks every request sampled must not make Warden
		// export every trace. Its trace id still joins the trace.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio),
			sdktrace.WithRemoteParentSampled(sdktrace.TraceIDRatioBased(ratio)),
			sdktrace.WithRemoteParentNotSampled(sdktrace.TraceIDRatioBased(ratio)))))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return func(ctx context.Context) error {
		return errors.Join(tp.ForceFlush(ctx), tp.Shutdown(ctx))
	}, nil
}

// Tracer is Warden's tracer from the process's provider.
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// FromRequest is ctx with the trace context r carries (traceparent), so
// that an agent's trace continues through Warden.
func FromRequest(ctx context.Context, r *http.Request) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
}

// Inject puts ctx's trace context in h, for an upstream.
func Inject(ctx context.Context, h http.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// Transport passes the trace context of each request's context on in its
// headers.
type Transport struct{ Base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
		r = r.Clone(r.Context())
		Inject(r.Context(), r.Header)
	}
	return t.Base.RoundTrip(r)
}

// String is an attribute, for spans that record.
func String(k, v string) attribute.KeyValue { return attribute.String(k, v) }

// Flush exports the spans ended so far, when tracing is on.
func Flush(ctx context.Context) error {
	if tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		return tp.ForceFlush(ctx)
	}
	return nil
}
