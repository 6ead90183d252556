package provenance

import (
	"container/list"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-run/warden/internal/wire"
)

// Trust of a source.
const (
	Trusted   = "trusted"
	Untrusted = "untrusted"
	User      = "user"
	Unknown   = "unknown"
)

// Read is one result relayed to the agent.
type Read struct {
	Upstream string
	// Tool is the tool, resource or route read.
	Tool  string
	Trust string // Trusted or Untrusted
	// AuditIndex is the entry of the decision that allowed the read (-1
	// when unknown, as in async audit mode).
	AuditIndex int64
	values     map[Value]struct{}
}

// Session is what one agent (in one task) has read, bounded: past MaxReads
// the oldest reads are forgotten, and counted.
type Session struct {
	mu    sync.Mutex
	max   int
	reads []*Read // oldest first
	// index finds the reads a value was seen in.
	index   map[Value][]*Read
	user    map[Value]struct{}
	evicted int
}

// MaxReads is how many reads a session keeps by default; maxLinks how many
// reads of one value an argument links to (the latest).
const (
	MaxReads = 256
	maxLinks = 8
)

func newSession(max int) *Session {
	return &Session{max: max, user: map[Value]struct{}{}, index: map[Value][]*Read{}}
}

// Record adds a read of content (a JSON-shaped value, or a string). The
// values of echo, when not nil (the arguments of the call that returned
// content), are not the read's: a tool that repeats what it was asked ("no
// contact matches x@evil.example") is no source of it, or the agent could
// launder an untrusted value through a trusted tool.
func (s *Session) Record(r Read, content any, echo map[string]any) {
	vals := FromJSON(content)
	var own map[Value]bool
	if len(echo) > 0 && r.Trust == Trusted { // untrusted content stays untrusted, echo or not
		own = map[Value]bool{}
		for _, v := range FromJSON(echo) {
			own[v] = true
		}
	}
	r.values = make(map[Value]struct{}, len(vals))
	for _, v := range vals {
		if !own[v] {
			r.values[v] = struct{}{}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reads) >= s.max {
		old := s.reads[0]
		s.reads = s.reads[1:]
		s.evicted++
		for v := range old.values {
			rs := slices.DeleteFunc(s.index[v], func(x *Read) bool { return x == old })
			if len(rs) == 0 {
				delete(s.index, v)
			} else {
				s.index[v] = rs
			}
		}
	}
	p := &r
	s.reads = append(s.reads, p)
	for v := range p.values {
		s.index[v] = append(s.index[v], p)
	}
}

// AddUserInput records what the user asked for (a trusted source): its
// values count as the user's.
func (s *Session) AddUserInput(content any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vals := FromJSON(content)
	if len(s.user)+len(vals) > 4*maxValues {
		clear(s.user) // the latest requests are the ones that matter
	}
	for _, v := range vals {
		s.user[v] = struct{}{}
	}
}

// Args says where each argument (a leaf of args, by its dotted path) came
// from, and the session's untrusted reads, for the decision's lineage.
func (s *Session) Args(args map[string]any) *wire.Provenance {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &wire.Provenance{Args: map[string]wire.ArgOrigin{}, UntrustedReads: []int64{}, Evicted: s.evicted}
	for _, r := range s.reads {
		if r.Trust == Untrusted && r.AuditIndex >= 0 && !slices.Contains(p.UntrustedReads, r.AuditIndex) {
			p.UntrustedReads = append(p.UntrustedReads, r.AuditIndex)
		}
	}
	leaves(args, "", func(path string, v any) {
		vals := FromJSON(v)
		if len(vals) == 0 {
			// A string in which no value was recognised (a form the
			// extractor does not know) is read nowhere, as far as anyone
			// can say: unknown, never silently absent.
			if str, ok := v.(string); ok && len(strings.TrimSpace(str)) >= 3 {
				p.Args[path] = wire.ArgOrigin{Sources: []string{Unknown}, Upstreams: []string{}, Tools: []string{}, Reads: []int64{}}
			}
			return
		}
		o := wire.ArgOrigin{Values: len(vals), Sources: []string{}, Upstreams: []string{}, Tools: []string{}, Reads: []int64{}}
		for _, val := range vals {
			k := val
			var origins []string
			if _, ok := s.user[k]; ok {
				origins = append(origins, User)
			}
			rs := s.index[k]
			for i, r := range rs {
				origins = appendNew(origins, r.Trust)
				o.Upstreams = appendNew(o.Upstreams, r.Upstream)
				o.Tools = appendNew(o.Tools, r.Tool)
				// The latest reads of a value are its lineage; a value read
				// a hundred times links to the last few.
				if r.AuditIndex >= 0 && i >= len(rs)-maxLinks {
					o.Reads = append(o.Reads, r.AuditIndex)
				}
			}
			if len(origins) == 0 {
				origins = []string{Unknown}
			}
			if len(origins) == 1 && origins[0] == Untrusted {
				o.OnlyUntrusted = true
			}
			for _, x := range origins {
				o.Sources = appendNew(o.Sources, x)
			}
		}
		slices.Sort(o.Sources)
		slices.Sort(o.Upstreams)
		slices.Sort(o.Tools)
		slices.Sort(o.Reads)
		o.Reads = slices.Compact(o.Reads)
		p.Args[path] = o
	})
	return p
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// leaves calls fn for every string and number of v, with its dotted path
// ("to", "payment.iban", "items.0.id"); fn gets the whole of v too at path
// "" when v is not a container.
func leaves(v any, path string, fn func(string, any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			leaves(e, join(path, k), fn)
		}
	case []any:
		for i, e := range x {
			leaves(e, join(path, strconv.Itoa(i)), fn)
		}
	case nil, bool:
	default:
		fn(path, x)
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// Store holds the sessions of many agents, each in each task, bounded: the
// least recently used goes first, and, at the store's sweeps, so do the
// sessions of agents that can no longer act (ForgetAgents). A session is
// not forgotten for being idle: an injected agent that waited would find
// its untrusted reads' values read nowhere (unknown), which the guardrails
// refuse as a target only while the agent is tainted, and taints end.
type Store struct {
	mu       sync.Mutex
	max      int
	maxReads int
	now      func() time.Time
	gone     func(agent string) bool
	swept    time.Time
	lru      *list.List // of *entry, most recent first
	m        map[string]*list.Element
}

type entry struct {
	key, agent string
	s          *Session
}

// sweepEvery is how often the store asks which agents can no longer act.
const sweepEvery = time.Minute

// NewStore keeps at most maxSessions sessions of at most maxReads reads.
func NewStore(maxSessions, maxReads int) *Store {
	if maxSessions <= 0 {
		maxSessions = 4096
	}
	if maxReads <= 0 {
		maxReads = MaxReads
	}
	return &Store{max: maxSessions, maxReads: maxReads, now: time.Now, lru: list.New(), m: map[string]*list.Element{}}
}

// ForgetAgents makes the store drop, about once a minute, the sessions of
// the agents gone reports as unable to act (disabled, removed): agents that
// come and go leave nothing behind. gone must not call the store.
func (st *Store) ForgetAgents(gone func(agent string) bool) {
	st.mu.Lock()
	st.gone = gone
	st.mu.Unlock()
}

// Session returns the session of agent in task, made when needed. An
// agent's provenance is keyed by what the agent cannot choose (its id, and
// the task its token is bound to), never by its MCP session: a new
// session does not forget what the agent read.
func (st *Store) Session(agent, task string) *Session {
	key := agent + "\x00" + task
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sweep(now)
	if e, ok := st.m[key]; ok {
		st.lru.MoveToFront(e)
		return e.Value.(*entry).s
	}
	if st.lru.Len() >= st.max {
		st.remove(st.lru.Back())
	}
	s := newSession(st.maxReads)
	st.m[key] = st.lru.PushFront(&entry{key: key, agent: agent, s: s})
	return s
}

// sweep drops, when a sweep is due, the sessions of agents that are gone.
func (st *Store) sweep(now time.Time) {
	if st.gone == nil || now.Sub(st.swept) < sweepEvery {
		return
	}
	st.swept = now
	for e := st.lru.Front(); e != nil; {
		next := e.Next()
		if st.gone(e.Value.(*entry).agent) {
			st.remove(e)
		}
		e = next
	}
}

func (st *Store) remove(e *list.Element) {
	st.lru.Remove(e)
	delete(st.m, e.Value.(*entry).key)
}

// Len is how many sessions the store holds.
func (st *Store) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lru.Len()
}
