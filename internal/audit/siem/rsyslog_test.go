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
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/warden-run/warden/internal/audit/audittest"
	"github.com/warden-run/warden/internal/audit/siem"
)

// rsyslog runs a real rsyslogd with a TCP input and a TLS input on loopback,
// writing every message it receives to a file: "<input> <message>".
type rsyslog struct {
	plain, tls string // addresses
	out, sd    string // raw messages; their structured data, parsed
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
	// Control characters are kept as they arrive (rsyslog escapes them by
	// default, which would hide any a message carried); the structured
	// data is also parsed, by rsyslog's own RFC 5424 parser, into sd.log.
	conf := fmt.Sprintf(`global(workDirectory=%[1]q defaultNetstreamDriverCAFile=%[2]q defaultNetstreamDriverCertFile=%[3]q defaultNetstreamDriverKeyFile=%[4]q parser.escapeControlCharactersOnReceive="off")
module(load="imtcp" maxSessions="100")
module(load="mmpstrucdata")
input(type="imtcp" address="127.0.0.1" port="%[5]d" name="plain")
input(type="imtcp" address="127.0.0.1" port="%[6]d" name="tls" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="string" string="%%inputname%% %%rawmsg%%\n")
template(name="sd" type="string" string="%%inputname%% %%$!rfc5424-sd%%\n")
*.* action(type="omfile" file=%[7]q template="raw")
*.* action(type="mmpstrucdata")
*.* action(type="omfile" file=%[8]q template="sd")
`, dir, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"),
		ports[0], ports[1], filepath.Join(dir, "out.log"), filepath.Join(dir, "sd.log"))
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
		out: filepath.Join(dir, "out.log"), sd: filepath.Join(dir, "sd.log"), ca: pool}
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
	return r.lines(t, r.out, input, n)
}

// structured waits until rsyslog has parsed the structured data of n
// messages from input and returns it, as rsyslog's JSON.
func (r *rsyslog) structured(t *testing.T, input string, n int) []string {
	t.Helper()
	return r.lines(t, r.sd, input, n)
}

func (r *rsyslog) lines(t *testing.T, file, input string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []string
		if f, err := os.Open(file); err == nil {
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

var syslogLine = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) warden - (\S+) \[warden@32473 index="(\d+)"(?:[^\]\\]|\\.)*\] (.*)$`)

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

// Agents choose actions, ids and reasons. What they write must reach the
// collector as data: one message, its structured data parsed as Warden
// wrote it, and nothing a terminal or a line-based reader would act on.
func TestSyslogCarriesAgentTextAsData(t *testing.T) {
	t.Parallel()
	rs := startRsyslog(t)
	l, closeLog := newLog(t, filepath.Join(t.TempDir(), "audit"), audittest.Signer(t))
	defer closeLog()
	cases := []struct {
		name, action string
		// want is the action in the structured data, as rsyslog parsed it.
		want string
	}{
		{"structured data delimiters", `tools/call"] injected="1" \ end`, `tools/call"] injected="1" \ end`},
		{"a forged second message", "tools/call\n<14>1 2026-01-01T00:00:00Z forged warden - decision - fake", `tools/call\x0a<14>1 2026-01-01T00:00:00Z forged warden - decision - fake`},
		{"terminal escape sequences", "\x1b]0;owned\x07\x1b[2J\r", `\x1b]0;owned\x07\x1b[2J\x0d`},
		{"unicode controls and format characters", "a\u0085b\u2028c\u202ed\x7fe\u200bf", `a\u0085b\u2028c\u202ed\x7fe\u200bf`},
	}
	for i, c := range cases {
		e := audittest.Entry(i)
		e.Action, e.DecisionID, e.Reasons = c.action, "d-"+c.action, []string{"because " + c.action}
		id, _ := json.Marshal(c.action)
		e.Resource = []byte(`{"id":` + string(id) + `,"kind":"mcp.tool"}`)
		if _, err := l.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	n := len(cases)
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

	for _, input := range []string{"plain", "tls"} {
		msgs := rs.received(t, input, n)
		time.Sleep(100 * time.Millisecond) // a message split in two would show as more lines
		if msgs = rs.received(t, input, n); len(msgs) != n {
			t.Fatalf("%s: %d lines for %d messages: %q", input, len(msgs), n, msgs)
		}
		for _, msg := range msgs {
			if syslogLine.FindStringSubmatch(msg) == nil {
				t.Errorf("%s: not one RFC 5424 message: %q", input, msg)
			}
			for _, r := range msg {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
					t.Errorf("%s: message carries %U: %q", input, r, msg)
					break
				}
			}
		}
	}
	for _, sd := range rs.structured(t, "plain", n) {
		var parsed map[string]map[string]string
		if err := json.Unmarshal([]byte(sd), &parsed); err != nil {
			t.Fatalf("rsyslog's structured data %q: %v", sd, err)
		}
		p := parsed["warden@32473"]
		i, err := strconv.Atoi(p["index"])
		if err != nil || i < 0 || i >= n {
			t.Fatalf("structured data %q: no index of ours", sd)
		}
		if c := cases[i]; p["action"] != c.want || p["decision_id"] != "d-"+c.want || p["outcome"] == "" {
			t.Errorf("%s: rsyslog parsed %q, want action %q", c.name, sd, c.want)
		}
	}
	// The JSON body is the same entry: the same action, whatever it holds.
	data, err := l.Read(t.Context(), 0, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range rs.received(t, "plain", n) {
		m := syslogLine.FindStringSubmatch(msg)
		if m == nil {
			continue // reported above
		}
		i, _ := strconv.Atoi(m[5])
		var got, want map[string]any
		if err := json.Unmarshal([]byte(m[6]), &got); err != nil {
			t.Fatalf("the body of message %d is not JSON: %v", i, err)
		}
		json.Unmarshal(data[i], &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the body is not the entry:\n%v\n%v", cases[i].name, got, want)
		}
	}
}
