package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warden-run/warden/internal/demo"
)

// The demo's scenarios go as they say, whatever the time of day: every
// step has the outcome it expects, with the reason the policy gives.
func TestDemo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs bytes.Buffer
	d, err := demo.Start(ctx, demo.Options{Data: t.TempDir(), Log: &logs})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	ok, err := d.Play(ctx, &out)
	if err != nil || !ok {
		t.Fatalf("demo: ok %v, err %v\n%s\nlogs:\n%s", ok, err, out.String(), logs.String())
	}
	for _, want := range []string{"notional_limit_exceeded", "invalid_dpop_proof", "bad signature", "contained by Warden", "not_permitted",
		"department_sealed", "target_from_untrusted_content", "approval required", "setpoint_out_of_range", "arrive as [redacted]",
		"no_grant_for_this_patient", "its grant ended", "as maria.keller@plant.example", "setpoint changed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's table does not show %q:\n%s", want, out.String())
		}
	}
	if err := d.AwaitCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// Outside market hours the policy clock moves to the next session; in
// market hours it stays.
func TestDemoPlaysInMarketHours(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		now  string
		want string
	}{
		{"2026-11-27T10:00:00Z", "2026-11-27T15:00:00Z"}, // Friday morning: that afternoon
		{"2026-11-27T16:00:00Z", "2026-11-27T16:00:00Z"}, // open: no shift
		{"2026-11-28T16:00:00Z", "2026-11-30T15:00:00Z"}, // Saturday: Monday
		{"2026-11-25T22:00:00Z", "2026-11-27T15:00:00Z"}, // Wednesday night, Thanksgiving next: Friday
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		d, err := demo.Start(context.Background(), demo.Options{Data: t.TempDir(), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		got := d.PolicyClock.Format(time.RFC3339)
		d.Close()
		if got != c.want {
			t.Errorf("at %s the policy clock is %s, want %s", c.now, got, c.want)
		}
	}
}
