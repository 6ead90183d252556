package siem_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/siem"
)

// rsyslog runs a real rsyslogd with a TCP input and a TLS input on loopback,
// writing every message it receives to a file: "<input> <message>".
type rsyslog struct {
	plain, tls string // addresses
	out        string
	ca         *x509.CertPool
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd is not installed (Debian packages rsyslog and rsyslog-gnutls; .ci/run installs them)")
	}
	dir := t.TempDir()
	pool := writeCert(t, dir)
	ports := freePorts(t, 2)
	conf := fmt.Sprintf(`global(workDirectory=%[1]q defaultNetstreamDriverCAFile=%[2]q defaultNetstreamDriverCertFile=%[3]q defaultNetstreamDriverKeyFile=%[4]q)
module(load="imtcp" maxSessions="100")
input(type="imtcp" address="127.0.0.1" port="%[5]d" name="plain")
input(type="imtcp" address="127.0.0.1" port="%[6]d" name="tls" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="string" string="%%inputname%% %%rawmsg%%\n")
*.* action(type="omfile" file=%[7]q template="raw")
`, dir, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"),
		ports[0], ports[1], filepath.Join(dir, "out.log"))
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := &rsyslog{plain: fmt.Sprintf("127.0.0.1:%d", ports[0]), tls: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		out: filepath.Join(dir, "out.log"), ca: pool}
	for _, addr := range []string{r.plain, r.tls} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rsyslogd does not listen on %s: %s", addr, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r
}

// received waits until rsyslog has written n messages from input and returns them.
func (r *rsyslog) received(t *testing.T, input string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []string
		if f, err := os.Open(r.out); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if msg, ok := strings.CutPrefix(sc.Text(), input+" "); ok {
					got = append(got, msg)
				}
			}
			f.Close()
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog wrote %d of %d messages from %s", len(got), n, input)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var syslogLine = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) warden - (\S+) \[warden@32473 index="(\d+)"[^\]]*\] (.*)$`)

func TestSyslogToRsyslog(t *testing.T) {
	t.Parallel()
	rs := startRsyslog(t)
	l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
	defer closeLog()
	appendN(t, l, 0, 40)

	plain, err := siem.NewSyslog(siem.SyslogConfig{Address: rs.plain, Format: "json", Hostname: "warden-test", Facility: 10})
	if err != nil {
		t.Fatal(err)
	}
	overTLS, err := siem.NewSyslog(siem.SyslogConfig{Address: rs.tls, Format: "cef", Facility: 10,
		TLS: &tls.Config{RootCAs: rs.ca, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer run(t, l, "syslog-json", plain)()
	defer run(t, l, "syslog-cef", overTLS)()

	data, err := l.Read(t.Context(), 0, 40)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range rs.received(t, "plain", 40) {
		m := syslogLine.FindStringSubmatch(msg)
		if m == nil {
			t.Fatalf("not an RFC 5424 message from warden: %q", msg)
		}
		var idx int
		fmt.Sscan(m[5], &idx)
		if m[6] != string(data[idx]) {
			t.Fatalf("message %d carries %q, the entry is %q", idx, m[6], data[idx])
		}
		var e struct {
			Outcome string
			Kind    string
		}
		json.Unmarshal(data[idx], &e)
		pri := 10*8 + 6
		switch {
		case e.Outcome == "deny":
			pri = 10*8 + 4
		case e.Kind == "response":
			pri = 10*8 + 4
		case e.Kind == "admin" || e.Kind == "policy":
			pri = 10*8 + 5
		}
		if m[1] != fmt.Sprint(pri) || m[3] != "warden-test" || m[4] != e.Kind {
			t.Fatalf("header of message %d: pri %s host %s msgid %s", idx, m[1], m[3], m[4])
		}
	}
	for _, msg := range rs.received(t, "tls", 40) {
		m := syslogLine.FindStringSubmatch(msg)
		if m == nil || !strings.HasPrefix(m[6], "CEF:0|Warden|Warden|1|") || !strings.Contains(m[6], "cn1Label=index cn1="+m[5]) {
			t.Fatalf("not a CEF message over TLS: %q", msg)
		}
	}
}

// writeCert makes a self-signed certificate for 127.0.0.1 and returns a pool trusting it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func freePorts(t *testing.T, n int) []int {
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
