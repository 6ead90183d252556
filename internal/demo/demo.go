// Package demo is `warden demo`: the whole system on a temporary data
// directory, with three scenarios played through the MCP gateway by real
// MCP clients, and the attacks that must fail.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/warden-run/warden/internal/app"
	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/humans"
	"github.com/warden-run/warden/internal/humans/devidp"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/policies"
	"github.com/warden-run/warden/sdk"
)

// Options configure a demo.
type Options struct {
	// Data is the data directory; empty for a temporary one that Close removes.
	Data string
	// Log receives the servers' warnings and errors.
	Log io.Writer
	// Now is the wall clock; nil for time.Now.
	Now func() time.Time
}

// Demo is a running demonstration: a Warden server, an MCP gateway in the
// same process, and the upstream MCP servers behind it.
type Demo struct {
	// URL is the Warden server's; GatewayURL the gateway's MCP endpoint.
	URL, GatewayURL, Data string
	// PolicyClock is when the scenarios play for policy (see marketShift).
	PolicyClock time.Time
	App         *app.App

	tempData bool
	servers  []*http.Server
	gateway  *app.Gateway
	log      *slog.Logger
	agents   map[string]*agent
	// idp is the plant's OpenID provider, where its safety engineer signs in.
	idp *devidp.Provider
	// lastApproval is the approval request the last held call waits for.
	lastApproval string
	// taskSessions are MCP sessions whose tokens are bound to a task.
	taskSessions map[string]*mcp.ClientSession
	scanned      int64
	decisions    map[string]*audit.Entry
}

type agent struct {
	id     string
	key    *sdk.Key
	client *sdk.Client
}

// Start starts everything on loopback ports.
func Start(ctx context.Context, opts Options) (d *Demo, err error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	d = &Demo{Data: opts.Data, agents: map[string]*agent{}, decisions: map[string]*audit.Entry{}, taskSessions: map[string]*mcp.ClientSession{},
		log: slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if d.Data == "" {
		if d.Data, err = os.MkdirTemp("", "warden-demo-"); err != nil {
			return nil, err
		}
		d.tempData = true
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	listen := func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	wardenLn, err := listen()
	if err != nil {
		return nil, err
	}
	gatewayLn, err := listen()
	if err != nil {
		return nil, err
	}
	upstreamLn, err := listen()
	if err != nil {
		return nil, err
	}
	d.servers = append(d.servers, serveUpstreams(upstreamLn))
	d.URL = "http://" + wardenLn.Addr().String()
	d.GatewayURL = "http://" + gatewayLn.Addr().String() + "/mcp"

	finance, err := policies.Bundle("finance")
	if err != nil {
		return nil, err
	}
	shift, err := marketShift(finance, now())
	if err != nil {
		return nil, err
	}
	d.PolicyClock = now().Add(shift).UTC()

	// The plant's safety engineer signs in at an OpenID provider: a small
	// one, in process, in place of the plant's own.
	if d.idp, err = devidp.Start(safetyEngineer); err != nil {
		return nil, err
	}

	cfg := config.Default()
	cfg.Data = filepath.Join(d.Data, "warden")
	cfg.Humans = humans.Config{Issuer: d.idp.Issuer, ClientID: devidp.ClientID,
		Groups: map[string][]string{"plant-safety": {"safety-reviewer"}},
		Roles:  map[string][]string{"safety-reviewer": {"approvals.read", "approvals.vote"}}}
	cfg.Server.Addr = wardenLn.Addr().String()
	cfg.Identity.Issuer = d.URL
	cfg.Identity.Resources = []string{d.GatewayURL}
	cfg.Identity.TrustDomains = map[string]config.TrustDomain{"prod": {Description: "production agents", RequireDPoP: true}}
	// The agents run on this machine: their address is in an approved region.
	cfg.Decide.Regions = map[string][]string{"us-east": {"127.0.0.0/8", "::1/128"}}
	cfg.Decide.RecordInput = true
	cfg.Decide.ClockShift = shift
	cfg.Audit.CheckpointInterval = 200 * time.Millisecond
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.App, err = app.New(ctx, cfg, d.log); err != nil {
		return nil, err
	}
	api := &http.Server{Handler: d.App.Handler, ReadHeaderTimeout: 5 * time.Second}
	go api.Serve(wardenLn)
	d.servers = append(d.servers, api)

	up := "http://" + upstreamLn.Addr().String()
	gc := app.GatewayConfig{Listen: gatewayLn.Addr().String(), MCP: mcpgw.Config{
		Servers: []mcpgw.Server{
			{Name: "market-data", URL: up + "/market-data", Trust: mcpgw.Trusted},
			{Name: "trading", URL: up + "/trading", Trust: mcpgw.Trusted},
			{Name: "crm", URL: up + "/crm", Trust: mcpgw.Trusted},
			{Name: "pacs", Resource: "pacs/radiology", URL: up + "/pacs", Trust: mcpgw.Trusted},
			{Name: "oncology", URL: up + "/oncology", Trust: mcpgw.Trusted},
			{Name: "oven", Resource: "plc/line-3/oven", URL: up + "/oven", Trust: mcpgw.Trusted},
			{Name: "erp", Resource: "erp/purchasing", URL: up + "/erp", Trust: mcpgw.Untrusted},
			{Name: "email", URL: up + "/email", Trust: mcpgw.Trusted, Tools: map[string]map[string]any{"send": {"egress": true}}},
		},
		UpstreamTimeout: 10 * time.Second,
	}}
	if err := gc.Check(); err != nil {
		return nil, err
	}
	if d.gateway, err = d.App.NewGateway(gc); err != nil {
		return nil, err
	}
	gw := &http.Server{Handler: d.gateway.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go gw.Serve(gatewayLn)
	d.servers = append(d.servers, gw)
	d.gateway.Connect(ctx)

	for _, a := range []struct {
		id, owner string
		roles     []string
		attrs     map[string]string
	}{
		{"ai-agent://prod/finance/trading-optimizer", "team-quant", []string{"trader"}, nil},
		{"ai-agent://prod/radiology/assistant", "team-radiology", []string{"radiology-assistant"}, nil},
		{"ai-agent://prod/plant/maintenance-planner", "team-maintenance", []string{"maintenance-planner"}, map[string]string{"segment": "it"}},
		{"ai-agent://prod/plant/process-tuner", "team-process", []string{"process-tuner"}, map[string]string{"segment": "ics"}},
		{safety, "team-safety", []string{"safety-reviewer"}, map[string]string{"segment": "ics"}},
	} {
		k := sdk.GenerateKey()
		if _, err := d.App.Registry.Register(ctx, "admin:demo", identity.Registration{ID: a.id, Roles: a.roles, Owner: a.owner,
			Attributes: a.attrs, PublicKey: k.PublicJWK()}); err != nil {
			return nil, err
		}
		c, err := sdk.NewClient(d.URL, a.id, k, sdk.WithResource(d.GatewayURL), sdk.WithDPoP())
		if err != nil {
			return nil, err
		}
		d.agents[a.id] = &agent{id: a.id, key: k, client: c}
	}
	return d, nil
}

// safetyEngineer is the person who approves setpoint changes at the plant.
var safetyEngineer = devidp.User{ID: "maria.keller", Username: "maria.keller", Password: randomPassword(),
	Email: "maria.keller@plant.example", Groups: []string{"plant-safety"}}

func randomPassword() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// activate pushes a shipped bundle (its tests run first) and activates it.
func (d *Demo) activate(ctx context.Context, name string) (string, error) {
	b, err := policies.Bundle(name)
	if err != nil {
		return "", err
	}
	v, _, _, err := d.App.Policies.Push(ctx, "admin:demo", b, "warden demo: "+name)
	if err != nil {
		return "", err
	}
	if _, err := d.App.Policies.Activate(ctx, "admin:demo", v.ID); err != nil {
		return "", err
	}
	return v.ID, nil
}

// decision finds a decision's audit entry.
func (d *Demo) decision(ctx context.Context, id string) (*audit.Entry, error) {
	if e, ok := d.decisions[id]; ok {
		return e, nil
	}
	n, err := d.App.Audit.Size(ctx)
	if err != nil {
		return nil, err
	}
	if n > d.scanned {
		raw, err := d.App.Audit.Read(ctx, d.scanned, n)
		if err != nil {
			return nil, err
		}
		for _, r := range raw {
			e, err := audit.DecodeEntry(r)
			if err != nil {
				return nil, err
			}
			if e.DecisionID != "" {
				d.decisions[e.DecisionID] = e
			}
		}
		d.scanned = n
	}
	if e, ok := d.decisions[id]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("decision %s is not in the audit log", id)
}

// AwaitCheckpoint waits until a signed checkpoint covers every entry
// appended so far (checkpoints are signed every 200 ms here).
func (d *Demo) AwaitCheckpoint(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		size, err := d.App.Audit.Size(ctx)
		if err != nil {
			return err
		}
		cp, err := d.App.Audit.Checkpoint(ctx)
		if err == nil && cp.Size >= size && size > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no checkpoint covers the log: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops everything; a temporary data directory is removed.
func (d *Demo) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range slices.Backward(d.servers) {
		s.Shutdown(ctx)
		s.Close()
	}
	for _, s := range d.taskSessions {
		s.Close()
	}
	if d.gateway != nil {
		d.gateway.Close()
	}
	if d.App != nil {
		d.App.Close()
	}
	if d.idp != nil {
		d.idp.Close()
	}
	if d.tempData {
		os.RemoveAll(d.Data)
	}
}

// marketShift is how far the policy clock must move for the finance
// scenario to play in market hours: zero while the market is open (by the
// finance bundle's own schedule), otherwise to half an hour after the next
// open. The shift is printed with the results.
func marketShift(b *policy.Bundle, now time.Time) (time.Duration, error) {
	data, err := b.Data()
	if err != nil {
		return 0, err
	}
	raw, _ := json.Marshal(data["finance"])
	var f struct {
		Hours struct {
			Days        []string `json:"days"`
			Open, Close string
		} `json:"market_hours"`
		Holidays []string `json:"market_holidays"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, err
	}
	open, err1 := time.Parse("15:04", f.Hours.Open)
	closing, err2 := time.Parse("15:04", f.Hours.Close)
	if err := errors.Join(err1, err2); err != nil || len(f.Hours.Days) == 0 {
		return 0, fmt.Errorf("the finance bundle's market hours are not readable: %v", err)
	}
	isOpen := func(t time.Time) bool {
		t = t.UTC()
		minute := t.Hour()*60 + t.Minute()
		return slices.Contains(f.Hours.Days, t.Weekday().String()) && !slices.Contains(f.Holidays, t.Format("2006-01-02")) &&
			minute >= open.Hour()*60+open.Minute() && minute < closing.Hour()*60+closing.Minute()
	}
	if isOpen(now) && isOpen(now.Add(time.Minute)) {
		return 0, nil
	}
	day := now.UTC().Truncate(24 * time.Hour)
	for i := range 15 {
		at := day.AddDate(0, 0, i).Add(time.Duration(open.Hour())*time.Hour + time.Duration(open.Minute()+30)*time.Minute)
		if at.After(now) && isOpen(at) {
			return at.Sub(now).Truncate(time.Second), nil
		}
	}
	return 0, errors.New("the finance bundle's market does not open in the next two weeks")
}

// short is an agent id without its scheme and trust domain, for the table.
func short(id string) string {
	return strings.TrimPrefix(id, "ai-agent://prod/")
}
