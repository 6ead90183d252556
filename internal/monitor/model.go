package monitor

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"
)

// Names of the decision pipeline and the shipped bundles the model reads.
const (
	untrustedContent = "untrusted_content"
	policyNotAllowed = "warden.not_allowed"
)

// Bounds on what the model keeps of one agent: past them, what the agent
// used longest ago is forgotten first.
const (
	maxResources   = 256
	maxActions     = 64
	maxArgKeys     = 256
	maxNetworks    = 64
	maxTransitions = 1024
	maxEvidence    = 8
	maxPeerValues  = 2048 // per role
	maxRoles       = 256
	// entropyWindow is how many calls one measurement of the spread of
	// the agent's calls covers. A loop is windows at least loopShare of
	// which is one resource, from an agent whose commonest resource
	// usually makes under loopUsual of a window; erratic, a window spread
	// far more than usual and over more than erraticBits (four bits: as
	// if over sixteen resources evenly).
	entropyWindow = 32
	loopShare     = 0.75
	loopUsual     = 0.5
	loopWindows   = 3
	erraticBits   = 4.0
	// denyWindow is how many recent decisions the deny ratio is taken over.
	denyWindow = 20
	// sequenceGap is the longest pause between two calls that still makes
	// them a move from one to the other.
	sequenceGap = 10 * time.Minute
)

// Model is the behavioural model of every agent: it learns from events in
// the log's order and scores each agent. It is deterministic: the same
// events give the same state. It is not safe for concurrent use (Monitor
// is).
type Model struct {
	cfg    Config
	agents map[string]*agentState
	// peers is, per role, which agents used each resource (peer_drift).
	peers map[string]map[uint64]peerUse
	roles map[string]roleState
	// Position is the index of the last entry applied.
	Position int64
}

// roleState is how many agents have a role, and since when it is seen.
type roleState struct {
	Agents int       `json:"agents"`
	Since  time.Time `json:"since"`
}

type peerUse struct {
	Agent uint64 `json:"a"`
	Many  bool   `json:"m,omitempty"`
}

// Firing is the record of one signal of one agent: how often it fired, when
// last, and the audit indexes of its latest firings.
type Firing struct {
	Count    int64     `json:"count"`
	Last     time.Time `json:"last"`
	Evidence []int64   `json:"evidence"`
}

// agentState is what the model keeps of one agent. Sets of values are keyed
// by a 64-bit hash of the value, with the time it was last seen (unix
// seconds).
type agentState struct {
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Events int64     `json:"events"`

	Score   float64   `json:"score"`
	ScoreAt time.Time `json:"score_at"`
	// AuthScore is the part refused credentials add (see total).
	AuthScore float64            `json:"auth_score"`
	AuthAt    time.Time          `json:"auth_at"`
	Fired     map[string]*Firing `json:"fired,omitempty"`

	Denies    []int64 `json:"denies,omitempty"`     // unix nanos of recent denials
	AuthFails []int64 `json:"auth_fails,omitempty"` // and refused credentials

	Minute      int64   `json:"minute"` // unix minute being counted
	MinuteCount int     `json:"minute_count"`
	RateFired   int64   `json:"rate_fired"` // minute rate_spike last fired in
	RateMean    float64 `json:"rate_mean"`
	RateVar     float64 `json:"rate_var"`
	RateWindows int     `json:"rate_windows"`

	VolMean        float64 `json:"vol_mean"` // bytes relayed per minute
	VolVar         float64 `json:"vol_var"`
	VolWindows     int     `json:"vol_windows"`
	VolMinute      int64   `json:"vol_minute"` // unix minute being summed
	VolMinuteBytes int64   `json:"vol_minute_bytes"`
	VolFired       bool    `json:"vol_fired"` // data_volume fired for it

	Resources map[uint64]*seen `json:"resources,omitempty"`
	Actions   map[uint64]*seen `json:"actions,omitempty"`
	ArgKeys   map[uint64]*seen `json:"arg_keys,omitempty"`
	Networks  map[uint64]*seen `json:"networks,omitempty"`
	Trans     map[uint64]*seen `json:"trans,omitempty"`
	Prev      uint64           `json:"prev,omitempty"`
	PrevAt    time.Time        `json:"prev_at"`
	Roles     []string         `json:"roles,omitempty"`

	Window     []uint64 `json:"window,omitempty"`
	EntMean    float64  `json:"ent_mean"`
	EntVar     float64  `json:"ent_var"`
	EntWindows int      `json:"ent_windows"`
	TopMean    float64  `json:"top_mean"` // the usual count of a window's commonest resource
	LoopRun    int      `json:"loop_run"` // windows in a row dominated by one resource

	Recent     uint32      `json:"recent"` // outcomes of the last decisions, a bit each, 1 = deny
	RecentN    int         `json:"recent_n"`
	DenyRate   float64     `json:"deny_rate"`
	Hours      [24]float64 `json:"hours"`
	HoursAt    time.Time   `json:"hours_at"`
	HourFired  int64       `json:"hour_fired"` // unix hour off_hours last fired in
	SinceSweep int         `json:"since_sweep"`
}

// seen is a value's first and last use (since it was last forgotten), and
// for a resource the moves made from it and to it.
type seen struct {
	First int64  `json:"f"`
	Last  int64  `json:"l"`
	Count uint32 `json:"n,omitempty"`
	In    uint32 `json:"i,omitempty"`
}

// NewModel makes an empty model.
func NewModel(cfg Config) (*Model, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Model{cfg: cfg, agents: map[string]*agentState{}, peers: map[string]map[uint64]peerUse{},
		roles: map[string]roleState{}, Position: -1}, nil
}

// Apply learns from ev and returns the signals it fired. Events must come
// in the log's order; one at or before Position is ignored.
func (m *Model) Apply(ev Event) []string {
	if ev.Index <= m.Position {
		return nil
	}
	m.Position = ev.Index
	st := m.agents[ev.Agent]
	if st == nil {
		if ev.Kind == EventReleased {
			return nil
		}
		st = &agentState{First: ev.Time, Last: ev.Time, ScoreAt: ev.Time}
		m.agents[ev.Agent] = st
		m.bound()
	}
	t := ev.Time
	if t.Before(st.Last) { // replicas' clocks: never backwards
		t = st.Last
	}
	st.Last = t
	var fired []string
	fire := func(signal string) {
		if m.cfg.Weights[signal] == 0 {
			return // switched off
		}
		fired = append(fired, signal)
		st.fire(&m.cfg, signal, t, ev.Index)
	}
	switch ev.Kind {
	case EventReleased:
		st.release(t)
		return nil
	case EventAuthFailure:
		if !systemRefusal(ev.Reasons) && burst(&st.AuthFails, m.cfg.AuthFailures, t) {
			fire(SignalAuthFailures)
		}
		return fired
	case EventTokenIssued:
		m.network(st, ev, t, fire)
		return fired
	case EventUsage:
		m.volume(st, ev, st.Events >= int64(m.cfg.LearnEvents) && t.Sub(st.First) >= m.cfg.LearnFor, fire)
		return fired
	}
	ev.denied = ev.Denied() && !systemRefusal(ev.Reasons)
	m.hardSignals(st, ev, t, fire)
	learned := st.Events >= int64(m.cfg.LearnEvents) && t.Sub(st.First) >= m.cfg.LearnFor
	st.Events++
	m.rate(st, t, learned, fire)
	m.novelty(st, ev, t, learned, fire)
	m.network(st, ev, t, fire)
	m.spread(st, ev, learned, fire)
	m.denyRatio(st, ev, learned, fire)
	m.hours(st, t, learned, fire)
	m.peer(st, ev, t, fire)
	if st.SinceSweep++; st.SinceSweep >= 1000 {
		st.SinceSweep = 0
		st.sweep(t, m.cfg.Forget)
	}
	return fired
}

// learning says what readers must be told of the agent's learning: 0 for
// an agent never seen, 1 while it has fewer decisions than LearnEvents, 2
// after.
func (m *Model) learning(agent string) int {
	st := m.agents[agent]
	switch {
	case st == nil:
		return 0
	case st.Events < int64(m.cfg.LearnEvents):
		return 1
	}
	return 2
}

// hardSignals fire whether or not the agent has learnt.
func (m *Model) hardSignals(st *agentState, ev Event, t time.Time, fire func(string)) {
	denied := ev.denied
	if denied && burst(&st.Denies, m.cfg.DenyBurst, t) {
		fire(SignalDenyBurst)
	}
	// Untrusted content, not every taint a policy sets (pii, say), makes
	// egress suspect.
	if (ev.Egress && slices.Contains(ev.Taints, untrustedContent)) || slices.Contains(ev.Reasons, "tainted_session_egress") {
		fire(SignalTaintedEgress)
	}
	if denied && slices.Contains(ev.Reasons, "warden.not_allowed") {
		fire(SignalNotPermitted)
	}
	// Denied for crossing: another domain's resource denied for some other
	// reason is not a crossing attempt policy refused.
	if denied && (slices.Contains(ev.Reasons, "cross_trust_domain") ||
		(ev.ResourceDomain != "" && ev.ResourceDomain != trustDomain(ev.Agent) && slices.Contains(ev.Reasons, policyNotAllowed))) {
		fire(SignalCrossDomain)
	}
}

// systemRefusal reports whether a refusal's reasons say nothing of the
// agent's behaviour (systemReasons).
func systemRefusal(reasons []string) bool {
	return slices.ContainsFunc(reasons, func(r string) bool { return systemReasons[r] })
}

// burst notes an event at t in times, which keeps the last b.Count, and
// reports whether they all fall within b.Window; a burst, once reported,
// starts a new count.
func burst(times *[]int64, b Burst, t time.Time) bool {
	*times = append(*times, t.UnixNano())
	if len(*times) > b.Count {
		*times = (*times)[len(*times)-b.Count:]
	}
	if len(*times) == b.Count && t.UnixNano()-(*times)[0] <= int64(b.Window) {
		*times = (*times)[:0]
		return true
	}
	return false
}

// rate counts calls per minute and compares each minute with the agent's
// usual active minute.
func (m *Model) rate(st *agentState, t time.Time, learned bool, fire func(string)) {
	minute := t.Unix() / 60
	if minute != st.Minute {
		if st.MinuteCount > 0 {
			x := float64(st.MinuteCount)
			if st.RateFired == st.Minute { // a spike does not become the norm
				x = min(x, st.rateLimit(m.cfg.RateZ))
			}
			st.RateMean, st.RateVar = ewma(st.RateMean, st.RateVar, x, 0.05, st.RateWindows == 0)
			st.RateWindows++
		}
		st.Minute, st.MinuteCount = minute, 0
	}
	st.MinuteCount++
	if learned && st.RateWindows >= 10 && st.RateFired != minute && st.MinuteCount >= m.cfg.RateMin &&
		float64(st.MinuteCount) > st.rateLimit(m.cfg.RateZ) {
		st.RateFired = minute
		fire(SignalRateSpike)
	}
}

// volume compares what was relayed to the agent in a minute (the usage
// entries of that minute, from every enforcement point and replica, summed)
// with its usual minute: far more is data leaving. A minute is judged as
// its entries arrive and joins the baseline when the next one begins.
func (m *Model) volume(st *agentState, ev Event, learned bool, fire func(string)) {
	minute := ev.Time.Unix() / 60
	if minute != st.VolMinute {
		if st.VolMinuteBytes > 0 {
			x := min(float64(st.VolMinuteBytes), st.volumeLimit(m.cfg.RateZ)) // an exfiltration does not become the norm
			if st.VolWindows == 0 {
				x = float64(st.VolMinuteBytes)
			}
			st.VolMean, st.VolVar = ewma(st.VolMean, st.VolVar, x, 0.05, st.VolWindows == 0)
			st.VolWindows++
		}
		st.VolMinute, st.VolMinuteBytes, st.VolFired = minute, 0, false
	}
	st.VolMinuteBytes += ev.Bytes
	if learned && !st.VolFired && st.VolWindows >= 10 && st.VolMinuteBytes >= m.cfg.VolumeMin &&
		float64(st.VolMinuteBytes) > st.volumeLimit(m.cfg.RateZ) {
		st.VolFired = true
		fire(SignalDataVolume)
	}
}

// volumeLimit is the most bytes a minute may carry before it is far above
// the usual; the spread is taken as at least half the usual.
func (st *agentState) volumeLimit(z float64) float64 {
	return st.VolMean + z*max(math.Sqrt(st.VolVar), st.VolMean/2)
}

// rateLimit is the most calls a minute may have before it is a spike. The
// spread is at least a Poisson count's.
func (st *agentState) rateLimit(z float64) float64 {
	sd := max(math.Sqrt(st.RateVar), math.Sqrt(st.RateMean), 1)
	return st.RateMean + z*sd
}

// ewma moves an exponentially weighted mean and variance towards x.
func ewma(mean, variance, x, alpha float64, first bool) (float64, float64) {
	if first {
		return x, 0
	}
	diff := x - mean
	incr := alpha * diff
	return mean + incr, (1 - alpha) * (variance + diff*incr)
}

// novelty fires for a resource, action or argument key the agent has not
// used before (or not within Forget), and for a move between two known
// resources that is rare from the first.
func (m *Model) novelty(st *agentState, ev Event, t time.Time, learned bool, fire func(string)) {
	now, forget := t.Unix(), int64(m.cfg.Forget/time.Second)
	if ev.Resource != "" {
		res := hash(ev.Resource)
		known := use(&st.Resources, res, now, forget, maxResources)
		established := known && now-st.Resources[res].First >= int64(m.cfg.LearnFor/time.Second)
		if !known && learned {
			fire(SignalNewResource)
		}
		if known && st.Prev != 0 && t.Sub(st.PrevAt) <= sequenceGap {
			if from := st.Resources[st.Prev]; from != nil {
				pair := hash2(st.Prev, res)
				var n uint32
				if tr := st.Trans[pair]; tr != nil && now-tr.Last <= forget {
					n = tr.Count
				}
				// A move never made, between two resources the agent has
				// used for long, and often enough that a move of share
				// RareShare between them would have been seen three
				// times on average.
				enough := 3 / m.cfg.RareShare
				to := st.Resources[res]
				if learned && established && n == 0 && float64(from.Count) >= enough && float64(to.In) >= enough {
					fire(SignalRareTransition)
				}
				use(&st.Trans, pair, now, forget, maxTransitions)
				st.Trans[pair].Count++
				from.Count++
				to.In++
			}
		}
		st.Prev, st.PrevAt = res, t
	}
	if ev.Action != "" && !use(&st.Actions, hash(ev.Action), now, forget, maxActions) && learned {
		fire(SignalNewAction)
	}
	newKey := false
	for _, k := range ev.ArgKeys {
		if !use(&st.ArgKeys, hash(ev.Resource+"\x00"+k), now, forget, maxArgKeys) {
			newKey = true
		}
	}
	if newKey && learned {
		fire(SignalNewArgKey)
	}
}

// network fires for a source network or region the agent has not acted
// from before.
func (m *Model) network(st *agentState, ev Event, t time.Time, fire func(string)) {
	learned := st.Events >= int64(m.cfg.LearnEvents) && t.Sub(st.First) >= m.cfg.LearnFor
	now, forget := t.Unix(), int64(m.cfg.Forget/time.Second)
	isNew := false
	if n := network(ev.SourceIP); n != "" && !use(&st.Networks, hash("net:"+n), now, forget, maxNetworks) {
		isNew = true
	}
	if ev.Region != "" && !use(&st.Networks, hash("region:"+ev.Region), now, forget, maxNetworks) {
		isNew = true
	}
	if isNew && learned {
		fire(SignalNewNetwork)
	}
}

// use marks value as used at now in set, keeping at most limit values,
// and reports whether it was known (used within forget).
func use(set *map[uint64]*seen, value uint64, now, forget int64, limit int) bool {
	if *set == nil {
		*set = map[uint64]*seen{}
	}
	s := (*set)[value]
	if s != nil {
		known := now-s.Last <= forget
		if !known {
			s.Count, s.In, s.First = 0, 0, now
		}
		s.Last = now
		return known
	}
	if len(*set) >= limit {
		evictOldest(*set)
	}
	(*set)[value] = &seen{First: now, Last: now}
	return false
}

// evictOldest removes the value used longest ago (the smallest key among
// equals, so that the result does not depend on the map's order).
func evictOldest(set map[uint64]*seen) {
	var oldest uint64
	first := true
	for k, s := range set {
		if first || s.Last < set[oldest].Last || (s.Last == set[oldest].Last && k < oldest) {
			oldest, first = k, false
		}
	}
	delete(set, oldest)
}

// spread measures, every entropyWindow calls, how spread the agent's calls
// are over resources (Shannon entropy, bits) and compares it with the
// agent's usual spread: much lower is a loop, much higher erratic.
func (m *Model) spread(st *agentState, ev Event, learned bool, fire func(string)) {
	if ev.Resource == "" {
		return
	}
	st.Window = append(st.Window, hash(ev.Resource))
	if len(st.Window) < entropyWindow {
		return
	}
	h, top := entropy(st.Window)
	st.Window = st.Window[:0]
	if top >= loopShare*entropyWindow {
		st.LoopRun++
	} else {
		st.LoopRun = 0
	}
	if learned && st.EntWindows >= 8 {
		band := 3 * max(math.Sqrt(st.EntVar), 0.25)
		switch {
		case st.LoopRun == loopWindows && st.TopMean < loopUsual*entropyWindow:
			fire(SignalLoop)
			return
		case h > st.EntMean+band && h > erraticBits:
			fire(SignalErratic)
			return
		}
	}
	first := st.EntWindows == 0
	st.EntMean, st.EntVar = ewma(st.EntMean, st.EntVar, h, 0.1, first)
	st.TopMean, _ = ewma(st.TopMean, 0, float64(top), 0.1, first)
	st.EntWindows++
}

// entropy is the Shannon entropy of the values' distribution, in bits,
// and how many times the commonest value occurs. It sums in sorted order,
// so the same values give the same bits.
func entropy(vs []uint64) (h float64, top int) {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := float64(len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		p := float64(j-i) / n
		h -= p * math.Log2(p)
		top = max(top, j-i)
		i = j
	}
	return h, top
}

// denyRatio compares the share of the agent's last decisions that were
// denied with its usual share: probing looks like a sudden run of denials.
func (m *Model) denyRatio(st *agentState, ev Event, learned bool, fire func(string)) {
	d := 0.0
	st.Recent <<= 1
	if ev.denied {
		st.Recent |= 1
		d = 1
	}
	st.Recent &= 1<<denyWindow - 1
	st.RecentN = min(st.RecentN+1, denyWindow)
	if learned && st.RecentN == denyWindow {
		r := float64(popcount(st.Recent)) / denyWindow
		if r >= 0.5 && r >= st.DenyRate+0.3 {
			fire(SignalDenyRatio)
			st.Recent, st.RecentN = 0, 0
			return
		}
	}
	st.DenyRate += 0.01 * (d - st.DenyRate)
}

func popcount(x uint32) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// hours keeps how the agent's activity falls over the hours of the day
// (UTC), fading over Forget, and fires once per hour for activity in an
// hour that holds under 2% of it.
func (m *Model) hours(st *agentState, t time.Time, learned bool, fire func(string)) {
	if !st.HoursAt.IsZero() {
		f := math.Exp2(-float64(t.Sub(st.HoursAt)) / float64(m.cfg.Forget))
		for i := range st.Hours {
			st.Hours[i] *= f
		}
	}
	st.HoursAt = t
	h := t.UTC().Hour()
	total := 0.0
	for _, v := range st.Hours {
		total += v
	}
	if unixHour := t.Unix() / 3600; learned && total > 0 && st.Hours[h] < 0.02*total && st.HourFired != unixHour {
		st.HourFired = unixHour
		fire(SignalOffHours)
	}
	st.Hours[h]++
}

// peer fires when an agent uses, for the first time, a resource that no
// other agent sharing one of its roles uses, in a role with at least three
// agents, seen for at least LearnFor. It needs no baseline of the agent's
// own: the peers are the baseline.
func (m *Model) peer(st *agentState, ev Event, t time.Time, fire func(string)) {
	if ev.Resource == "" || len(ev.Roles) == 0 {
		return
	}
	for _, r := range ev.Roles {
		if !slices.Contains(st.Roles, r) && len(st.Roles) < 16 {
			st.Roles = append(st.Roles, r)
			if _, ok := m.roles[r]; ok || len(m.roles) < maxRoles {
				role := m.roles[r]
				if role.Agents == 0 {
					role.Since = t
				}
				role.Agents++
				m.roles[r] = role
			}
		}
	}
	agent, res := hash(ev.Agent), hash(ev.Resource)
	alone, counted := true, false
	for _, r := range ev.Roles {
		role, known := m.roles[r]
		if !known {
			continue
		}
		uses := m.peers[r]
		if uses == nil {
			uses = map[uint64]peerUse{}
			m.peers[r] = uses
		}
		u, ok := uses[res]
		switch {
		case !ok && len(uses) >= maxPeerValues:
			return // the role's table is full: no judgement on what it cannot hold
		case !ok:
			uses[res] = peerUse{Agent: agent}
		case u.Agent != agent:
			alone = false
			if !u.Many {
				uses[res] = peerUse{Agent: u.Agent, Many: true}
			}
		case u.Many:
			alone = false
		default:
			return // the agent's own, already counted: not its first use
		}
		if role.Agents >= 3 && t.Sub(role.Since) >= m.cfg.LearnFor {
			counted = true
		}
	}
	if counted && alone {
		fire(SignalPeerDrift)
	}
}

// fire adds signal's weight to the score (after its decay to t) and
// records the firing.
func (st *agentState) fire(cfg *Config, signal string, t time.Time, index int64) {
	if signal == SignalAuthFailures {
		st.AuthScore = min(100, decay(cfg, st.AuthScore, st.AuthAt, t)+cfg.Weights[signal])
		st.AuthAt = t
	} else {
		st.Score = min(100, st.scoreAt(cfg, t)+cfg.Weights[signal])
		st.ScoreAt = t
	}
	if st.Fired == nil {
		st.Fired = map[string]*Firing{}
	}
	f := st.Fired[signal]
	if f == nil {
		f = &Firing{}
		st.Fired[signal] = f
	}
	f.Count++
	f.Last = t
	f.Evidence = append(f.Evidence, index)
	if len(f.Evidence) > maxEvidence {
		f.Evidence = f.Evidence[len(f.Evidence)-maxEvidence:]
	}
}

// scoreAt is the score of the agent's behaviour decayed to t.
func (st *agentState) scoreAt(cfg *Config, t time.Time) float64 {
	return decay(cfg, st.Score, st.ScoreAt, t)
}

// decay is score, as of at, decayed to t.
func decay(cfg *Config, score float64, at, t time.Time) float64 {
	if score == 0 || !t.After(at) {
		return score
	}
	return score * math.Exp2(-float64(t.Sub(at))/float64(cfg.HalfLife))
}

// total is the agent's risk score from its behaviour and its refused
// credentials. Refused credentials may be someone else's doing (a copy of
// the agent's token, a captured assertion): alone they raise the risk to
// just under high, enough to step the agent up, never to restrict or
// quarantine it; with the agent's own behaviour they add up.
func total(cfg *Config, behaviour, auth float64) float64 {
	return min(100, behaviour+min(auth, cfg.Levels.High-1))
}

// release starts the agent's score over after an operator set it active.
func (st *agentState) release(t time.Time) {
	st.Score, st.ScoreAt, st.Fired = 0, t, nil
	st.AuthScore, st.AuthAt = 0, t
	st.Denies, st.AuthFails = nil, nil
	st.Recent, st.RecentN = 0, 0
}

// sweep drops values not used within forget.
func (st *agentState) sweep(t time.Time, forget time.Duration) {
	cut := t.Add(-forget).Unix()
	for _, set := range []map[uint64]*seen{st.Resources, st.Actions, st.ArgKeys, st.Networks, st.Trans} {
		for k, s := range set {
			if s.Last < cut {
				delete(set, k)
			}
		}
	}
}

// bound forgets the agents seen longest ago once there are more than
// MaxAgents, a hundredth of them at a time.
func (m *Model) bound() {
	if len(m.agents) <= m.cfg.MaxAgents {
		return
	}
	type aged struct {
		id   string
		last time.Time
	}
	all := make([]aged, 0, len(m.agents))
	for id, st := range m.agents {
		all = append(all, aged{id, st.Last})
	}
	slices.SortFunc(all, func(a, b aged) int {
		return cmp.Or(a.last.Compare(b.last), strings.Compare(a.id, b.id))
	})
	for _, a := range all[:max(1, len(all)/100)] {
		delete(m.agents, a.id)
	}
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64() | 1 // never 0, which means none
}

func hash2(a, b uint64) uint64 {
	return hash(string([]byte{byte(a), byte(a >> 8), byte(a >> 16), byte(a >> 24), byte(a >> 32), byte(a >> 40), byte(a >> 48), byte(a >> 56),
		byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24), byte(b >> 32), byte(b >> 40), byte(b >> 48), byte(b >> 56)}))
}

// trustDomain is an agent id's trust domain.
func trustDomain(agent string) string {
	rest, ok := strings.CutPrefix(agent, "ai-agent://")
	if !ok {
		return ""
	}
	td, _, _ := strings.Cut(rest, "/")
	return td
}
