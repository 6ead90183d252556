package monitor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// traffic makes reproducible agent behaviour: working hours 09:00 to 17:00
// UTC, a few calls a minute over a handful of tools in a usual order,
// from one network, with a rare denial.
type traffic struct {
	r     *rand.Rand
	t     time.Time
	index int64
	tools []string
	day   int // the next day normal plays
	cur   map[string]int
}

var day0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

const (
	agentA = "ai-agent://prod/support/a"
	agentB = "ai-agent://prod/support/b"
	agentC = "ai-agent://prod/support/c"
)

func newTraffic(seed uint64) *traffic {
	return &traffic{r: rand.New(rand.NewPCG(seed, 1)), t: day0, cur: map[string]int{},
		tools: []string{"mcp.tool:tickets/search", "mcp.tool:tickets/get", "mcp.tool:kb/search", "mcp.tool:tickets/add_comment"}}
}

// event is one call of agent at the traffic's clock.
func (g *traffic) event(agent, resource string) Event {
	g.index++
	return Event{Index: g.index, Time: g.t, Kind: EventDecision, Agent: agent, Action: "tools/call",
		Resource: resource, Outcome: "allow", SourceIP: "10.0.0.5", Region: "eu-west", Roles: []string{"support"},
		ArgKeys: []string{"id", "query"}}
}

// normal plays days of usual behaviour for agents into m and returns
// every signal fired.
func (g *traffic) normal(m *Model, days int, agents ...string) []string {
	var fired []string
	for ; days > 0; days-- {
		start := day0.AddDate(0, 0, g.day)
		g.day++
		for minute := 0; minute < 8*60; minute++ {
			for _, a := range agents {
				n := 5 + g.r.IntN(8)
				cur := g.cur[a]
				for i := 0; i < n; i++ {
					g.t = start.Add(time.Duration(minute)*time.Minute + time.Duration(i)*time.Second)
					// The next tool, or now and then the one after: never
					// the same one twice, never back.
					if g.r.IntN(5) == 0 {
						cur = (cur + 2) % len(g.tools)
					} else {
						cur = (cur + 1) % len(g.tools)
					}
					g.cur[a] = cur
					ev := g.event(a, g.tools[cur])
					if g.r.IntN(50) == 0 {
						ev.Outcome, ev.Reasons = "deny", []string{"ticket_closed"}
					}
					fired = append(fired, m.Apply(ev)...)
				}
			}
		}
	}
	return fired
}

func testModel(t *testing.T) *Model {
	t.Helper()
	m, err := NewModel(Config{LearnFor: 24 * time.Hour, LearnEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// learnt is a model whose three support agents have three days of usual
// behaviour, and the traffic's clock on the fourth day at 10:00.
func learnt(t *testing.T) (*Model, *traffic) {
	t.Helper()
	m, g := testModel(t), newTraffic(7)
	if fired := g.normal(m, 3, agentA, agentB, agentC); len(fired) > 0 {
		t.Fatalf("usual behaviour fired %v", fired)
	}
	g.t = day0.AddDate(0, 0, 3).Add(time.Hour)
	return m, g
}

func TestUsualBehaviourFiresNothing(t *testing.T) {
	t.Parallel()
	m, g := learnt(t)
	// Another usual day after learning: still nothing.
	if fired := g.normal(m, 1, agentA, agentB, agentC); len(fired) > 0 {
		t.Fatalf("usual behaviour fired %v", fired)
	}
	r := m.Risk(agentA, g.t)
	if r.Score != 0 || r.Level != LevelLow || len(r.Signals) != 0 || r.Learning {
		t.Fatalf("risk after usual behaviour: %+v", r)
	}
}

// firedBy applies events and returns the distinct signals they fired.
func firedBy(m *Model, evs ...Event) []string {
	var out []string
	for _, ev := range evs {
		for _, s := range m.Apply(ev) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestSignalsFireOnTheirPattern(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		signal string
		play   func(g *traffic) []Event
	}{
		{"a minute of many calls", SignalRateSpike, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 120; i++ {
				g.t = g.t.Add(400 * time.Millisecond)
				evs = append(evs, g.event(agentA, g.tools[i%4]))
			}
			return evs
		}},
		{"a tool never used", SignalNewResource, func(g *traffic) []Event {
			return []Event{g.event(agentA, "mcp.tool:crm/export_all")}
		}},
		{"an action never taken", SignalNewAction, func(g *traffic) []Event {
			ev := g.event(agentA, g.tools[0])
			ev.Action = "resources/read"
			return []Event{ev}
		}},
		{"an argument never given", SignalNewArgKey, func(g *traffic) []Event {
			ev := g.event(agentA, g.tools[0])
			ev.ArgKeys = []string{"id", "forward_to"}
			return []Event{ev}
		}},
		{"a move the agent never makes", SignalRareTransition, func(g *traffic) []Event {
			// The tools follow each other in a ring, never one twice.
			a := g.event(agentA, g.tools[0])
			g.t = g.t.Add(time.Second)
			return []Event{a, g.event(agentA, g.tools[0])}
		}},
		{"the same call over and over", SignalLoop, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < (loopWindows+1)*entropyWindow; i++ {
				g.t = g.t.Add(3 * time.Second)
				evs = append(evs, g.event(agentA, g.tools[1]))
			}
			return evs
		}},
		{"calls all over the place", SignalErratic, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 2*entropyWindow; i++ {
				g.t = g.t.Add(3 * time.Second)
				evs = append(evs, g.event(agentA, fmt.Sprintf("mcp.tool:misc/tool_%d", i)))
			}
			return evs
		}},
		{"slow probing", SignalDenyRatio, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 2*denyWindow; i++ {
				g.t = g.t.Add(15 * time.Second)
				ev := g.event(agentA, g.tools[i%4])
				if i%2 == 0 {
					ev.Outcome, ev.Reasons = "deny", []string{"ticket_closed"}
				}
				evs = append(evs, ev)
			}
			return evs
		}},
		{"at night", SignalOffHours, func(g *traffic) []Event {
			g.t = day0.AddDate(0, 0, 3).Add(-6 * time.Hour) // 03:00
			return []Event{g.event(agentA, g.tools[0])}
		}},
		{"from another network", SignalNewNetwork, func(g *traffic) []Event {
			ev := g.event(agentA, g.tools[0])
			ev.SourceIP = "203.0.113.9"
			return []Event{ev}
		}},
		{"from another region", SignalNewNetwork, func(g *traffic) []Event {
			ev := g.event(agentA, g.tools[0])
			ev.Region = "ap-south"
			return []Event{ev}
		}},
		{"far more data than usual", SignalDataVolume, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 20; i++ { // its usual minutes: 200 to 300 KB
				g.t = g.t.Add(time.Minute)
				g.index++
				evs = append(evs, Event{Index: g.index, Time: g.t, Kind: EventUsage, Agent: agentA, Bytes: int64(200_000 + g.r.IntN(100_000))})
			}
			g.t = g.t.Add(time.Minute)
			g.index++
			return append(evs, Event{Index: g.index, Time: g.t, Kind: EventUsage, Agent: agentA, Bytes: 40 << 20})
		}},
		{"far more data, split over four replicas", SignalDataVolume, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 20; i++ {
				g.t = g.t.Add(time.Minute)
				g.index++
				evs = append(evs, Event{Index: g.index, Time: g.t, Kind: EventUsage, Agent: agentA, Bytes: int64(200_000 + g.r.IntN(100_000))})
			}
			g.t = g.t.Add(time.Minute).Truncate(time.Minute)
			for r := 0; r < 4; r++ { // each replica's entry for the minute: under volume_min and the limit alone
				g.index++
				evs = append(evs, Event{Index: g.index, Time: g.t.Add(time.Duration(r) * time.Second), Kind: EventUsage, Agent: agentA, Bytes: 600_000})
			}
			return evs
		}},
		{"a tool no peer uses", SignalPeerDrift, func(g *traffic) []Event {
			return []Event{g.event(agentA, "mcp.tool:payments/transfer")}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, g := learnt(t)
			fired := firedBy(m, c.play(g)...)
			if !slices.Contains(fired, c.signal) {
				t.Fatalf("fired %v, want %s among them", fired, c.signal)
			}
			r := m.Risk(agentA, g.t)
			if r.Score == 0 || !slices.Contains(r.Signals, c.signal) {
				t.Fatalf("risk %+v does not show %s", r, c.signal)
			}
			// The others saw nothing.
			if r := m.Risk(agentB, g.t); r.Score != 0 {
				t.Fatalf("agent b's risk moved: %+v", r)
			}
		})
	}
}

// Hard signals count from an agent's first minute, before it has learnt.
func TestHardSignalsCountWhileLearning(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		signal string
		play   func(g *traffic) []Event
	}{
		{"ten denials in a minute", SignalDenyBurst, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 10; i++ {
				g.t = g.t.Add(time.Second)
				ev := g.event(agentA, g.tools[0])
				ev.Outcome, ev.Reasons = "deny", []string{"ticket_closed"}
				evs = append(evs, ev)
			}
			return evs
		}},
		{"refused credentials", SignalAuthFailures, func(g *traffic) []Event {
			var evs []Event
			for i := 0; i < 3; i++ {
				g.t = g.t.Add(time.Second)
				ev := g.event(agentA, g.tools[0])
				ev.Kind, ev.Outcome, ev.Reasons = EventAuthFailure, "deny", []string{"warden.dpop_invalid"}
				evs = append(evs, ev)
			}
			return evs
		}},
		{"egress from a tainted session", SignalTaintedEgress, func(g *traffic) []Event {
			ev := g.event(agentA, "mcp.tool:email/send")
			ev.Taints, ev.Egress = []string{"untrusted_content"}, true
			return []Event{ev}
		}},
		{"a tool no role allows", SignalNotPermitted, func(g *traffic) []Event {
			ev := g.event(agentA, "mcp.tool:payments/transfer")
			ev.Outcome, ev.Reasons = "deny", []string{"warden.not_allowed"}
			return []Event{ev}
		}},
		{"another trust domain's resource", SignalCrossDomain, func(g *traffic) []Event {
			ev := g.event(agentA, "db.table:hr/salaries")
			ev.Outcome, ev.Reasons, ev.ResourceDomain = "deny", []string{"cross_trust_domain"}, "corp"
			return []Event{ev}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, g := testModel(t), newTraffic(1)
			fired := firedBy(m, c.play(g)...)
			if !slices.Contains(fired, c.signal) {
				t.Fatalf("fired %v, want %s", fired, c.signal)
			}
			if r := m.Risk(agentA, g.t); !r.Learning || r.Score == 0 {
				t.Fatalf("risk %+v: want a score while learning", r)
			}
		})
	}
}

// While an agent learns, what only a baseline could judge fires nothing.
func TestLearningAgentIsNotJudgedByBaseline(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(3)
	var evs []Event
	for i := 0; i < 3*entropyWindow; i++ {
		g.t = g.t.Add(time.Second)
		ev := g.event(agentA, fmt.Sprintf("mcp.tool:x/t%d", i%7))
		ev.SourceIP = fmt.Sprintf("198.51.%d.1", i)
		evs = append(evs, ev)
	}
	if fired := firedBy(m, evs...); len(fired) > 0 {
		t.Fatalf("a learning agent fired %v", fired)
	}
}

// Refusals that say nothing of the agent (it is already quarantined,
// Warden could not decide) fire nothing.
func TestSystemRefusalsAreNotTheAgents(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(4)
	var evs []Event
	for i := 0; i < 30; i++ {
		g.t = g.t.Add(time.Second)
		ev := g.event(agentA, g.tools[0])
		ev.Outcome, ev.Reasons = "deny", []string{"warden.state_unavailable"}
		evs = append(evs, ev)
		fail := g.event(agentA, g.tools[0])
		fail.Kind, fail.Outcome, fail.Reasons = EventAuthFailure, "deny", []string{"warden.agent_quarantined"}
		evs = append(evs, fail)
	}
	if fired := firedBy(m, evs...); len(fired) > 0 {
		t.Fatalf("system refusals fired %v", fired)
	}
}

// Denials for the agent's own risk or status (a restricted agent writing,
// one held back by its risk) are not probing: counting them would feed the
// risk that caused them.
func TestDenialsForRiskAreNotProbing(t *testing.T) {
	t.Parallel()
	for _, reason := range []string{"risk_read_only", "agent_restricted_read_only", "risk_too_high", "risk_unknown"} {
		t.Run(reason, func(t *testing.T) {
			t.Parallel()
			m, g := learnt(t)
			var evs []Event
			for i := 0; i < 3*denyWindow; i++ {
				g.t = g.t.Add(10 * time.Second)
				ev := g.event(agentA, g.tools[i%4])
				ev.Outcome, ev.Reasons = "deny", []string{reason}
				evs = append(evs, ev)
			}
			if fired := firedBy(m, evs...); len(fired) > 0 {
				t.Fatalf("denials for the agent's risk fired %v", fired)
			}
		})
	}
}

// Refused credentials may be someone else's doing (a copy of the agent's
// token): alone, however many, they keep the agent's risk under high.
func TestRefusedCredentialsAloneStayUnderHigh(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(9)
	for i := 0; i < 60; i++ {
		g.t = g.t.Add(time.Second)
		ev := g.event(agentA, g.tools[0])
		ev.Kind, ev.Outcome, ev.Reasons = EventAuthFailure, "deny", []string{"warden.token_revoked"}
		m.Apply(ev)
	}
	if r := m.Risk(agentA, g.t); r.Level != LevelMedium || !slices.Contains(r.Signals, SignalAuthFailures) {
		t.Fatalf("after 60 refused credentials: %+v, want medium", r)
	}
	// With the agent's own misbehaviour, they add up.
	ev := g.event(agentA, "mcp.tool:email/send")
	ev.Taints, ev.Egress = []string{"untrusted_content"}, true
	m.Apply(ev)
	if r := m.Risk(agentA, g.t); r.Score < 75 {
		t.Fatalf("refused credentials and tainted egress: %+v, want critical", r)
	}
}

// Once a role's table of resources is full, a resource it cannot hold is
// not judged: peer_drift does not fire on every call.
func TestFullPeerTableJudgesNothing(t *testing.T) {
	t.Parallel()
	m, g := learnt(t)
	for i := 0; i < maxPeerValues; i++ {
		g.t = g.t.Add(time.Second)
		m.Apply(g.event(agentB, fmt.Sprintf("mcp.tool:filler/%d", i)))
	}
	var evs []Event
	for i := 0; i < 5; i++ {
		g.t = g.t.Add(time.Second)
		evs = append(evs, g.event(agentA, "mcp.tool:beyond/the_table"))
	}
	var drift int
	for _, ev := range evs {
		for _, s := range m.Apply(ev) {
			if s == SignalPeerDrift {
				drift++
			}
		}
	}
	if drift > 0 {
		t.Fatalf("peer_drift fired %d times on a resource the full table cannot hold", drift)
	}
}

// Tainted egress is egress after untrusted content, not after any taint.
func TestOnlyUntrustedContentMakesEgressSuspect(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(10)
	ev := g.event(agentA, "mcp.tool:email/send")
	ev.Taints, ev.Egress = []string{"pii"}, true
	if fired := m.Apply(ev); slices.Contains(fired, SignalTaintedEgress) {
		t.Fatal("egress after a policy's own taint fired tainted_egress")
	}
}

// Usual volumes, even with busy minutes twice the usual, fire nothing.
func TestUsualVolumesFireNothing(t *testing.T) {
	t.Parallel()
	m, g := learnt(t)
	var evs []Event
	for i := 0; i < 200; i++ {
		g.t = g.t.Add(time.Minute)
		g.index++
		b := int64(2_000_000 + g.r.IntN(1_000_000)) // above volume_min: the baseline judges
		if i%25 == 24 {
			b *= 2
		}
		evs = append(evs, Event{Index: g.index, Time: g.t, Kind: EventUsage, Agent: agentA, Bytes: b})
	}
	if fired := firedBy(m, evs...); len(fired) > 0 {
		t.Fatalf("usual volumes fired %v", fired)
	}
}

// A weight of 0 switches a signal off.
func TestZeroWeightSwitchesASignalOff(t *testing.T) {
	t.Parallel()
	m, err := NewModel(Config{Weights: map[string]float64{SignalTaintedEgress: 0}})
	if err != nil {
		t.Fatal(err)
	}
	g := newTraffic(8)
	ev := g.event(agentA, "mcp.tool:email/send")
	ev.Taints, ev.Egress = []string{"untrusted_content"}, true
	if fired := m.Apply(ev); len(fired) > 0 {
		t.Fatalf("fired %v", fired)
	}
}

func TestScoreDecaysAndLevelsFollow(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(5)
	for i := 0; i < 3; i++ {
		ev := g.event(agentA, "mcp.tool:email/send")
		ev.Taints, ev.Egress = []string{"untrusted_content"}, true
		m.Apply(ev)
	}
	r := m.Risk(agentA, g.t)
	if r.Score != 90 || r.Level != LevelCritical {
		t.Fatalf("after three tainted egress attempts: %+v, want 90 critical", r)
	}
	half := m.Risk(agentA, g.t.Add(Defaults.HalfLife))
	if half.Score != 45 || half.Level != LevelMedium {
		t.Fatalf("a half-life later: %+v, want 45 medium", half)
	}
	late := m.Risk(agentA, g.t.Add(5*Defaults.HalfLife))
	if late.Score != 3 || late.Level != LevelLow || len(late.Signals) != 0 {
		t.Fatalf("five half-lives later: %+v, want 3, low, no signals", late)
	}
}

func TestReleaseStartsTheScoreOver(t *testing.T) {
	t.Parallel()
	m, g := testModel(t), newTraffic(6)
	ev := g.event(agentA, "mcp.tool:email/send")
	ev.Taints, ev.Egress = []string{"untrusted_content"}, true
	m.Apply(ev)
	g.index++
	m.Apply(Event{Index: g.index, Time: g.t, Kind: EventReleased, Agent: agentA})
	if r := m.Risk(agentA, g.t); r.Score != 0 || len(r.Signals) != 0 {
		t.Fatalf("after release: %+v", r)
	}
}

func TestMemoryPerAgentIsBounded(t *testing.T) {
	t.Parallel()
	m, g := learnt(t)
	for i := 0; i < 20_000; i++ {
		g.t = g.t.Add(time.Second)
		ev := g.event(agentA, fmt.Sprintf("mcp.tool:x/t%d", i))
		ev.ArgKeys = []string{fmt.Sprintf("k%d", i)}
		ev.SourceIP = fmt.Sprintf("10.%d.%d.1", i/256%256, i%256)
		m.Apply(ev)
	}
	st := m.agents[agentA]
	for name, n := range map[string][2]int{
		"resources":   {len(st.Resources), maxResources},
		"arg keys":    {len(st.ArgKeys), maxArgKeys},
		"networks":    {len(st.Networks), maxNetworks},
		"transitions": {len(st.Trans), maxTransitions},
	} {
		if n[0] > n[1] {
			t.Errorf("%s: %d kept, bound %d", name, n[0], n[1])
		}
	}
	for name, f := range st.Fired {
		if len(f.Evidence) > maxEvidence {
			t.Errorf("%s keeps %d pieces of evidence", name, len(f.Evidence))
		}
	}
}

func TestConfigRefusesNonsense(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"unknown signal", Config{Weights: map[string]float64{"rate": 5}}},
		{"weight over 100", Config{Weights: map[string]float64{SignalLoop: 500}}},
		{"levels out of order", Config{Levels: LevelScores{Medium: 50, High: 40, Critical: 90}}},
		{"burst of nothing", Config{DenyBurst: Burst{Count: 0, Window: time.Minute}}},
		{"negative learning", Config{LearnFor: -time.Hour}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewModel(c.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
