// Package archivetest runs a real S3-compatible server for tests:
// SeaweedFS (`weed mini`), found as WARDEN_TEST_WEED or as weed on the
// PATH (.ci/run builds it). Without it the tests that need it skip and
// say why.
package archivetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/audit/archive"
)

// Weed finds the SeaweedFS binary, or skips the test saying why.
func Weed(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WARDEN_TEST_WEED"); p != "" {
		return p
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	t.Skip("no SeaweedFS: set WARDEN_TEST_WEED to a weed binary (.ci/run builds one) to test the S3 archive against a real S3-compatible server")
	return ""
}

// Server is a running SeaweedFS with its S3 gateway on loopback.
type Server struct {
	Endpoint             string // 127.0.0.1:port
	AccessKey, SecretKey string
	Bucket               string
}

// Start starts `weed mini` in a temporary directory, on free loopback
// ports, with one admin identity and one bucket; it stops at t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Weed(t)
	dir := t.TempDir()
	s := &Server{AccessKey: "warden-test-" + random(4), SecretKey: random(20), Bucket: "warden-audit"}
	cfg, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name": "warden", "credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions": []string{"Admin", "Read", "Write", "List", "Tagging"}}}})
	cfgFile := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 6)
	s.Endpoint = "127.0.0.1:" + strconv.Itoa(ports[0])
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	cmd := exec.Command(bin, "mini", "-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-s3.port="+strconv.Itoa(ports[0]), "-master.port="+strconv.Itoa(ports[1]), "-filer.port="+strconv.Itoa(ports[2]),
		"-volume.port="+strconv.Itoa(ports[3]), "-debug.port="+strconv.Itoa(ports[4]), "-metricsPort=0",
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", "-s3.config="+cfgFile, "-bucket="+s.Bucket)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	// Ready when the bucket takes and gives back an object.
	st, err := archive.NewS3(s.Config(""))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := st.Put(ctx, "ready", bytes.NewReader([]byte("ok")), 2)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("SeaweedFS did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	return s
}

// Config is the archive configuration for this server, under prefix.
func (s *Server) Config(prefix string) archive.S3Config {
	return archive.S3Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true, Region: "us-east-1"}
}

// S3 starts a server and returns a store in it, and a function that
// replaces a file in it behind the store's back (as someone with the
// bucket's credentials could).
func S3(t testing.TB) (archive.Store, func(name string, b []byte)) {
	t.Helper()
	s := Start(t)
	prefix := "audit-" + random(4) + "/"
	st, err := archive.NewS3(s.Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return st, func(name string, b []byte) {
		if err := st.Put(context.Background(), name, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
