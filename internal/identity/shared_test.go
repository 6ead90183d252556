package identity

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/store/sqlite"
)

// A record of the shared settings made before taints.expire_after was one
// of them gets it from the next replica to start, and the replicas after
// are compared with it. (It stayed empty, and was never compared.)
func TestSharedTaintExpiryIsFilledIn(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := SharedSettings{Issuer: "https://warden.test", Audience: "warden", AuditOrigin: "warden.test/audit",
		TrustDomains: map[string]SharedDomain{"prod": {RequireDPoP: true}}}
	raw, _ := json.Marshal(sharedRecord{Version: 1, SharedSettings: old, RecordedAt: time.Now().UTC()})
	if _, err := st.PutMetaIfAbsent(ctx, metaSharedSettings, raw); err != nil {
		t.Fatal(err)
	}
	hour, twoHours := old, old
	hour.TaintsExpireAfter, twoHours.TaintsExpireAfter = "1h0m0s", "2h0m0s"
	if err := BindSharedSettings(ctx, st, hour, false, time.Now()); err != nil {
		t.Fatalf("the first replica with the setting: %v", err)
	}
	err = BindSharedSettings(ctx, st, twoHours, false, time.Now())
	if !errors.Is(err, ErrSharedSettings) || !strings.Contains(err.Error(), `taints.expire_after: the deployment has "1h0m0s", this replica "2h0m0s"`) {
		t.Fatalf("a replica with another expiry: %v", err)
	}
	if err := BindSharedSettings(ctx, st, hour, false, time.Now()); err != nil {
		t.Fatalf("a replica with the same: %v", err)
	}
}
