package console

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/policy"
)

// The console draws its pictures as SVG on the server: no script, and
// every value escaped by html/template like any other text. Each picture
// has a text summary beside it for those who do not see it.

const (
	chartW = 600
	chartH = 120
)

// chart is a drawn picture.
type chart struct {
	Points  string // a polyline's points
	Marks   []mark
	Bars    []bar
	Summary string
	From    string
	To      string
	Empty   bool
}

type mark struct {
	X, Y  int
	Title string
}

type bar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

// point is one value at one time.
type point struct {
	T    time.Time
	V    float64
	Mark string
}

// lineChart draws points (oldest first, evenly spaced: one per decision)
// from 0 to top.
func lineChart(pts []point, top float64) chart {
	if len(pts) == 0 {
		return chart{Empty: true}
	}
	t0, t1 := pts[0].T, pts[len(pts)-1].T
	var b strings.Builder
	ch := chart{From: t0.UTC().Format(time.RFC3339), To: t1.UTC().Format(time.RFC3339)}
	hi, last := 0.0, ""
	for i, p := range pts {
		x := i * chartW / max(1, len(pts)-1)
		y := chartH - int(min(p.V, top)/top*chartH)
		fmt.Fprintf(&b, "%d,%d ", x, y)
		hi = max(hi, p.V)
		if p.Mark != "" && p.Mark != last {
			ch.Marks = append(ch.Marks, mark{X: x, Y: y, Title: p.T.UTC().Format(time.RFC3339) + ": " + p.Mark})
		}
		last = p.Mark
	}
	ch.Points = strings.TrimSpace(b.String())
	ch.Summary = fmt.Sprintf("%d points from %s to %s; highest %.0f, latest %.0f; signals named at %d of them", len(pts), ch.From, ch.To, hi, pts[len(pts)-1].V, len(ch.Marks))
	return ch
}

// bucket is decisions counted over one span of time.
type bucket struct {
	From, To        time.Time
	Entries         int64
	Sampled, Denied int
}

// rateBuckets and rateSpan: the overview's decision rate covers the last
// hour in 30 spans of two minutes.
const (
	rateBuckets = 30
	rateSpan    = 2 * time.Minute
	// rateSample is how many entries at the end of each span are read for
	// its deny share.
	rateSample = 40
)

// rates measures the audit log's rate over the last hour: entries per
// span exactly (by the indexes where each span starts), and the deny
// share of each span from its newest entries.
func (c *Console) rates(ctx context.Context, now time.Time) ([]bucket, error) {
	n, err := c.d.Audit.Size(ctx)
	if err != nil || n == 0 {
		return nil, err
	}
	bs := make([]bucket, rateBuckets)
	start := now.Add(-rateBuckets * rateSpan)
	lo := int64(0)
	idx := make([]int64, rateBuckets+1)
	for i := range rateBuckets + 1 {
		t := start.Add(time.Duration(i) * rateSpan)
		if i == rateBuckets {
			idx[i] = n
			break
		}
		at, err := c.firstAtFrom(ctx, t, lo, n)
		if err != nil {
			return nil, err
		}
		idx[i], lo = at, at
	}
	sampled := 0
	for i := range bs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := &bs[i]
		b.From, b.To = start.Add(time.Duration(i)*rateSpan), start.Add(time.Duration(i+1)*rateSpan)
		b.Entries = idx[i+1] - idx[i]
		if b.Entries == 0 || sampled >= windowBytes {
			continue // no deny share past the bytes the chart may read
		}
		raw, err := c.d.Audit.Read(ctx, max(idx[i], idx[i+1]-rateSample), idx[i+1])
		if err != nil {
			return nil, err
		}
		for _, d := range raw {
			sampled += len(d)
			e, err := audit.PeekEntry(d)
			if err != nil || e.Kind != audit.KindDecision {
				continue
			}
			b.Sampled++
			if e.Outcome == string(policy.Deny) {
				b.Denied++
			}
		}
	}
	return bs, nil
}

// firstAtFrom is firstAt over [lo, hi).
func (c *Console) firstAtFrom(ctx context.Context, t time.Time, lo, hi int64) (int64, error) {
	for lo < hi {
		mid := lo + (hi-lo)/2
		at, err := c.timeAt(ctx, mid)
		if err != nil {
			return 0, err
		}
		if at.Before(t) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// rateChart draws entries per second as bars, the denied share of each
// in red.
func rateChart(bs []bucket) chart {
	var top int64
	for _, b := range bs {
		top = max(top, b.Entries)
	}
	if top == 0 {
		return chart{Empty: true}
	}
	ch := chart{From: bs[0].From.UTC().Format(time.RFC3339), To: bs[len(bs)-1].To.UTC().Format(time.RFC3339)}
	w := chartW / len(bs)
	var total, peak float64
	for i, b := range bs {
		rate := float64(b.Entries) / rateSpan.Seconds()
		total += float64(b.Entries)
		peak = max(peak, rate)
		h := int(b.Entries * chartH / top)
		deny := 0
		if b.Sampled > 0 {
			deny = h * b.Denied / b.Sampled
		}
		title := fmt.Sprintf("%s: %.1f entries/s, %d of %d sampled decisions denied", b.From.UTC().Format("15:04"), rate, b.Denied, b.Sampled)
		ch.Bars = append(ch.Bars, bar{X: i * w, Y: chartH - h, W: w - 2, H: h - deny, Class: "allow", Title: title},
			bar{X: i * w, Y: chartH - deny, W: w - 2, H: deny, Class: "denied", Title: title})
	}
	ch.Summary = fmt.Sprintf("%.0f audit entries in the last hour, %.1f per second on average, %.1f at the peak", total, total/(rateBuckets*rateSpan.Seconds()), peak)
	return ch
}

// edge is one agent's calls on one resource.
type edge struct {
	Agent, Resource string
	Calls, Denied   int
}

// graph is who calls what, drawn: agents on the left, resources on the
// right, a line's width by calls, red where any was denied.
type graph struct {
	Agents, Resources []node
	Lines             []line
	Height            int
	Edges             []edge
}

type node struct {
	Name string
	Y    int
}

type line struct {
	Y1, Y2, Width int
	Class, Title  string
}

// graphNodes bounds how many agents and resources the graph names.
const graphNodes = 12

func callGraph(es []*audit.Entry) graph {
	byPair := map[[2]string]*edge{}
	agentCalls, resCalls := map[string]int{}, map[string]int{}
	for _, e := range es {
		var res struct{ ID string }
		json.Unmarshal(e.Resource, &res)
		if res.ID == "" {
			continue
		}
		k := [2]string{e.Agent, res.ID}
		ed := byPair[k]
		if ed == nil {
			ed = &edge{Agent: e.Agent, Resource: res.ID}
			byPair[k] = ed
		}
		ed.Calls++
		if e.Outcome == string(policy.Deny) {
			ed.Denied++
		}
		agentCalls[e.Agent]++
		resCalls[res.ID]++
	}
	top := func(m map[string]int) []node {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		slices.SortFunc(names, func(a, b string) int { return cmp.Or(m[b]-m[a], strings.Compare(a, b)) })
		names = names[:min(len(names), graphNodes)]
		out := make([]node, len(names))
		for i, n := range names {
			out[i] = node{Name: n, Y: 20 + i*28}
		}
		return out
	}
	g := graph{Agents: top(agentCalls), Resources: top(resCalls)}
	g.Height = 20 + 28*max(len(g.Agents), len(g.Resources))
	ya, yr := map[string]int{}, map[string]int{}
	for _, n := range g.Agents {
		ya[n.Name] = n.Y
	}
	for _, n := range g.Resources {
		yr[n.Name] = n.Y
	}
	most := 1
	for _, ed := range byPair {
		most = max(most, ed.Calls)
	}
	for _, ed := range byPair {
		g.Edges = append(g.Edges, *ed)
	}
	slices.SortFunc(g.Edges, func(a, b edge) int {
		return cmp.Or(b.Calls-a.Calls, strings.Compare(a.Agent, b.Agent), strings.Compare(a.Resource, b.Resource))
	})
	for _, ed := range g.Edges {
		y1, ok1 := ya[ed.Agent]
		y2, ok2 := yr[ed.Resource]
		if !ok1 || !ok2 {
			continue
		}
		class := "allow"
		if ed.Denied > 0 {
			class = "denied"
		}
		g.Lines = append(g.Lines, line{Y1: y1 - 4, Y2: y2 - 4, Width: 1 + 7*ed.Calls/most, Class: class,
			Title: ed.Agent + " → " + ed.Resource + ": " + strconv.Itoa(ed.Calls) + " calls, " + strconv.Itoa(ed.Denied) + " denied"})
	}
	g.Edges = g.Edges[:min(len(g.Edges), 10)]
	return g
}
