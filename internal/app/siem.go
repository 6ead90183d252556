package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/siem"
	"github.com/warden-run/warden/internal/config"
)

// startExporters builds every configured exporter and runs it until ctx
// ends. A broken exporter configuration stops the start: a SIEM that
// silently receives nothing is worse.
func startExporters(ctx context.Context, spawn func(func()), cfgs []config.Exporter, l *audit.Log, log *slog.Logger) error {
	var runners []*siem.Runner
	for _, c := range cfgs {
		exp, err := newExporter(c)
		if err != nil {
			return fmt.Errorf("audit exporter %s: %w", c.Name, err)
		}
		r, err := siem.NewRunner(siem.Config{Name: c.Name, Logger: log}, l, exp)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	for _, r := range runners {
		spawn(func() { r.Run(ctx) })
	}
	return nil
}

func newExporter(c config.Exporter) (siem.Exporter, error) {
	switch c.Type {
	case "syslog":
		sc := siem.SyslogConfig{Address: c.Address, Format: c.Format, Facility: 10}
		if c.Facility != nil {
			sc.Facility = *c.Facility
		}
		if c.TLS {
			host, _, _ := net.SplitHostPort(c.Address)
			sc.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
			if c.CAFile != "" {
				pem, err := os.ReadFile(c.CAFile)
				if err != nil {
					return nil, err
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("ca_file %s holds no PEM certificate", c.CAFile)
				}
				sc.TLS.RootCAs = pool
			}
		}
		return siem.NewSyslog(sc)
	case "ocsf":
		h := http.Header{}
		if c.TokenFile != "" {
			tok, err := readSecret(c.TokenFile)
			if err != nil {
				return nil, err
			}
			h.Set("Authorization", "Bearer "+tok)
		}
		return siem.NewOCSF(siem.HTTPConfig{URL: c.URL}, h)
	case "splunk_hec":
		tok, err := readSecret(c.TokenFile)
		if err != nil {
			return nil, err
		}
		return siem.NewSplunk(siem.HTTPConfig{URL: c.URL}, tok)
	case "webhook":
		secret, err := readSecret(c.SecretFile)
		if err != nil {
			return nil, err
		}
		return siem.NewWebhook(siem.HTTPConfig{URL: c.URL}, []byte(secret))
	}
	return nil, fmt.Errorf("unknown type %q", c.Type)
}

// readSecret reads a secret file, refusing one that others can read.
func readSecret(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New(path + " is empty")
	}
	return s, nil
}
