package siem

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/audit"
)

// SyslogConfig configures a syslog exporter.
type SyslogConfig struct {
	// Address is host:port of the collector.
	Address string
	// TLS, when set, wraps the connection (RFC 5425); nil is plain TCP.
	TLS *tls.Config
	// Format is the message body: "json" (the entry's canonical JSON) or "cef".
	Format string
	// Facility is the syslog facility number, 0 to 23; 10 is security/authorization.
	Facility int
	// Hostname and AppName fill the RFC 5424 header. Defaults: the host's
	// name and "warden".
	Hostname, AppName string
}

// Syslog sends entries as RFC 5424 messages over TCP or TLS, framed by
// octet counting (RFC 6587), one connection kept open between batches.
type Syslog struct {
	cfg  SyslogConfig
	mu   sync.Mutex
	conn net.Conn
	w    *bufio.Writer
}

// NewSyslog makes a syslog exporter; it connects on first use.
func NewSyslog(cfg SyslogConfig) (*Syslog, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("syslog: address %q: want host:port", cfg.Address)
	}
	switch cfg.Format {
	case "":
		cfg.Format = "json"
	case "json", "cef":
	default:
		return nil, fmt.Errorf("syslog: format %q: want json or cef", cfg.Format)
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("syslog: facility %d: want 0 to 23", cfg.Facility)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.AppName == "" {
		cfg.AppName = "warden"
	}
	return &Syslog{cfg: cfg}, nil
}

// Send implements Exporter.
func (s *Syslog) Send(ctx context.Context, batch []audit.Stored) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		var c net.Conn
		var err error
		if s.cfg.TLS != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: s.cfg.TLS}).DialContext(ctx, "tcp", s.cfg.Address)
		} else {
			c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
		}
		if err != nil {
			return fmt.Errorf("syslog: connect: %w", err)
		}
		s.conn, s.w = c, bufio.NewWriter(c)
	}
	if dl, ok := ctx.Deadline(); ok {
		s.conn.SetWriteDeadline(dl)
	}
	for _, st := range batch {
		msg := s.message(st)
		fmt.Fprintf(s.w, "%d %s", len(msg), msg)
	}
	if err := s.w.Flush(); err != nil {
		// The collector may have seen part of the batch: it is sent again whole.
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog: send: %w", err)
	}
	return nil
}

// message builds one RFC 5424 message:
// <PRI>1 TIMESTAMP HOST APP - MSGID [warden@32473 index=".." ...] BODY
func (s *Syslog) message(st audit.Stored) string {
	e := st.Entry
	pri := s.cfg.Facility*8 + severity(e)
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s ", pri, e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
		header(s.cfg.Hostname, 255), header(s.cfg.AppName, 48), header(string(e.Kind), 32))
	b.WriteString(`[warden@32473 index="`)
	b.WriteString(strconv.FormatInt(e.Index, 10))
	b.WriteByte('"')
	for _, p := range [][2]string{{"agent", e.Agent}, {"actor", e.Actor}, {"action", e.Action}, {"outcome", e.Outcome}, {"decision_id", e.DecisionID}} {
		if p[1] != "" {
			fmt.Fprintf(&b, ` %s="%s"`, p[0], sdEscape(p[1]))
		}
	}
	b.WriteString("] ")
	if s.cfg.Format == "cef" {
		b.WriteString(CEF(e))
	} else {
		b.Write(audit.VisibleJSON(st.Data))
	}
	return b.String()
}

// severity maps an entry to a syslog severity: refusals warn, automated
// responses and admin changes are notices, the rest informational.
func severity(e *audit.Entry) int {
	switch {
	case e.Outcome == "deny":
		return 4 // warning
	case e.Kind == audit.KindResponse:
		return 4
	case e.Kind == audit.KindAdmin, e.Kind == audit.KindPolicy:
		return 5 // notice
	}
	return 6 // informational
}

// header makes a value fit an RFC 5424 header field of at most max
// characters: printable ASCII, no spaces.
func header(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

// sdEscape escapes a structured data parameter value: '"', '\\' and ']'
// as RFC 5424 (section 6.3.3) says, then anything not graphic (see
// audit.Visible), which would otherwise reach the collector raw.
func sdEscape(s string) string {
	return audit.Visible(sdEscaper.Replace(s))
}

var sdEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)

// Close implements Exporter.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

var _ Exporter = (*Syslog)(nil)
