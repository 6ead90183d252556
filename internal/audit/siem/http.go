package siem

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// HTTPConfig is what every HTTP exporter needs.
type HTTPConfig struct {
	URL string
	// Client sends the requests; nil is a client with a 30s timeout.
	// Whatever it is, redirects are never followed (see noRedirects).
	Client *http.Client
}

func (c *HTTPConfig) check(what string) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s: url %q: want an http(s) URL", what, c.URL)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if c.Client != nil {
		cp := *c.Client
		client = &cp
	}
	client.CheckRedirect = noRedirects
	c.Client = client
	return nil
}

// noRedirects keeps every request at the configured URL. A followed
// redirect would carry the credential (Splunk's token, a bearer token)
// and the entries to wherever the answer points, another host included:
// the redirect answer itself comes back to post, which counts it as a
// failed delivery.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// marshal encodes v as JSON without HTML escaping, so that entries embedded
// in it keep the exact bytes the log hashed.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// post sends body and wants a 2xx answer. Errors never carry credentials.
func post(ctx context.Context, c *http.Client, what, rawURL string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return fmt.Errorf("%s: HTTP %d: the collector redirects, and redirects are not followed; configure the URL it redirects to", what, resp.StatusCode)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: HTTP %d", what, resp.StatusCode)
	}
	return nil
}

// Splunk sends entries to a Splunk HTTP Event Collector, one event each.
type Splunk struct {
	cfg   HTTPConfig
	token string
}

// NewSplunk makes a HEC exporter; url is the collector's event endpoint
// (https://splunk.example.com:8088/services/collector/event).
func NewSplunk(cfg HTTPConfig, token string) (*Splunk, error) {
	if err := cfg.check("splunk_hec"); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("splunk_hec: a token is required")
	}
	return &Splunk{cfg: cfg, token: token}, nil
}

// Send implements Exporter.
func (s *Splunk) Send(ctx context.Context, batch []audit.Stored) error {
	var body bytes.Buffer
	for _, st := range batch {
		ev := map[string]any{
			"time":       float64(st.Entry.Time.UnixMicro()) / 1e6,
			"source":     "warden",
			"sourcetype": "warden:audit",
			"event":      json.RawMessage(st.Data),
		}
		body.Write(marshal(ev))
		body.WriteByte('\n')
	}
	return post(ctx, s.cfg.Client, "splunk_hec", s.cfg.URL, body.Bytes(), http.Header{
		"Authorization": {"Splunk " + s.token}, "Content-Type": {"application/json"},
	})
}

// Close implements Exporter.
func (s *Splunk) Close() error { return nil }

// Webhook posts batches as JSON, signed with HMAC-SHA256 so the receiver
// can tell them from forgeries: X-Warden-Signature is
// "sha256=" + hex(HMAC(secret, timestamp + "." + body)), X-Warden-Timestamp
// the unix time, which the receiver should also check for freshness.
type Webhook struct {
	cfg    HTTPConfig
	secret []byte
	now    func() time.Time
}

// NewWebhook makes a webhook exporter.
func NewWebhook(cfg HTTPConfig, secret []byte) (*Webhook, error) {
	if err := cfg.check("webhook"); err != nil {
		return nil, err
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("webhook: the secret must be at least 16 bytes")
	}
	return &Webhook{cfg: cfg, secret: secret, now: time.Now}, nil
}

// WebhookSignature computes the signature header value for body at ts.
func WebhookSignature(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Send implements Exporter.
func (w *Webhook) Send(ctx context.Context, batch []audit.Stored) error {
	entries := make([]json.RawMessage, len(batch))
	for i, st := range batch {
		entries[i] = st.Data
	}
	body := marshal(map[string]any{"entries": entries})
	ts := strconv.FormatInt(w.now().Unix(), 10)
	return post(ctx, w.cfg.Client, "webhook", w.cfg.URL, body, http.Header{
		"Content-Type":       {"application/json"},
		"X-Warden-Timestamp": {ts},
		"X-Warden-Signature": {WebhookSignature(w.secret, ts, body)},
	})
}

// Close implements Exporter.
func (w *Webhook) Close() error { return nil }

var (
	_ Exporter = (*Splunk)(nil)
	_ Exporter = (*Webhook)(nil)
)
