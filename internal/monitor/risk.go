package monitor

import (
	"math"
	"slices"
	"time"
)

// Risk is an agent's risk as policy sees it (input.context.risk).
type Risk struct {
	// Score is 0 to 100, decaying while no signal fires.
	Score int `json:"score"`
	// Level is low, medium, high or critical.
	Level string `json:"level"`
	// Signals names the signals that fired within four half-lives.
	Signals []string `json:"signals"`
	// Learning says the agent's baseline is still being learnt: only hard
	// signals count.
	Learning bool `json:"learning"`
	// Stale says the monitor is behind the audit log (or stopped): the
	// score may miss the latest decisions.
	Stale bool `json:"stale"`
}

// Input is the risk as a policy input value.
func (r Risk) Input() map[string]any {
	signals := make([]any, len(r.Signals))
	for i, s := range r.Signals {
		signals[i] = s
	}
	return map[string]any{"score": r.Score, "level": r.Level, "signals": signals,
		"learning": r.Learning, "stale": r.Stale}
}

// AgentReport is what the model knows of one agent, for people.
type AgentReport struct {
	Agent    string             `json:"agent"`
	Risk     Risk               `json:"risk"`
	First    time.Time          `json:"first_seen"`
	Last     time.Time          `json:"last_seen"`
	Events   int64              `json:"decisions"`
	Firings  map[string]*Firing `json:"signals"`
	Position int64              `json:"position"`
}

// cell is an agent's risk as readers see it: immutable once published.
type cell struct {
	score    float64
	at       time.Time
	auth     float64
	authAt   time.Time
	fired    []firedSignal // by name
	learnt   time.Time     // when learning ends, if by time; zero when learnt
	learning bool
}

type firedSignal struct {
	name string
	last time.Time
}

func (m *Model) cell(st *agentState) *cell {
	c := &cell{score: st.Score, at: st.ScoreAt, auth: st.AuthScore, authAt: st.AuthAt}
	for name, f := range st.Fired {
		c.fired = append(c.fired, firedSignal{name, f.Last})
	}
	slices.SortFunc(c.fired, func(a, b firedSignal) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	if st.Events < int64(m.cfg.LearnEvents) {
		c.learning = true
	} else if end := st.First.Add(m.cfg.LearnFor); end.After(st.Last) {
		c.learnt = end
	}
	return c
}

// risk is the cell's risk at t.
func (c *cell) risk(cfg *Config, t time.Time) Risk {
	score := total(cfg, decay(cfg, c.score, c.at, t), decay(cfg, c.auth, c.authAt, t))
	s := int(math.Round(score))
	r := Risk{Score: s, Level: cfg.level(s), Signals: []string{},
		Learning: c.learning || (!c.learnt.IsZero() && t.Before(c.learnt))}
	ttl := 4 * cfg.HalfLife
	for _, f := range c.fired {
		if t.Sub(f.last) <= ttl {
			r.Signals = append(r.Signals, f.name)
		}
	}
	return r
}

// newAgentRisk is the risk of an agent the model has not seen: none, and
// learning.
func newAgentRisk() Risk {
	return Risk{Score: 0, Level: LevelLow, Signals: []string{}, Learning: true}
}

// Risk is agent's risk at t.
func (m *Model) Risk(agent string, t time.Time) Risk {
	st := m.agents[agent]
	if st == nil {
		return newAgentRisk()
	}
	return m.cell(st).risk(&m.cfg, t)
}
