package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// AdminEvent is one administrative action as the store recorded it, in the
// same transaction as the action.
type AdminEvent struct {
	// Seq is the store's number for the event, increasing.
	Seq    int64
	Time   time.Time
	Actor  string
	Action string
	Target string
	// Detail is a JSON object of the action's particulars, or nothing.
	Detail json.RawMessage
}

// AdminEvents is where the relay reads admin actions from.
type AdminEvents interface {
	// AdminEventsAfter returns up to limit events numbered after seq, in order.
	AdminEventsAfter(ctx context.Context, seq int64, limit int) ([]AdminEvent, error)
}

// EventRelay copies the record of admin actions, which the store writes in
// the same transaction as each action, into the audit log: an outbox, so
// that no committed action goes unlogged even if the process stops between
// the commit and the append. It runs where the log's lead is. An entry
// carries its event's sequence number (detail.event_seq); a crash between an
// append and the saving of the relay's position can repeat an entry, never
// lose one.
type EventRelay struct {
	log    *Log
	events AdminEvents
	logger *slog.Logger
	mu     sync.Mutex // one pass at a time
	// ActorEmail, when set, names the email of a person ("human:..."
	// actor), which the entry then carries as detail.actor_email. Set it
	// before Run.
	ActorEmail func(ctx context.Context, actor string) string
}

const relayCursor = "admin-events"

// ResponseActor is the actor of the automatic response's actions, and
// ActionIncidentOpen the action of an incident's opening (an alert).
const (
	ResponseActor      = "warden:response"
	ActionIncidentOpen = "incident.open"
)

// NewEventRelay makes a relay from events into l.
func NewEventRelay(l *Log, events AdminEvents, logger *slog.Logger) *EventRelay {
	return &EventRelay{log: l, events: events, logger: orDiscard(logger)}
}

// Sync appends every event not yet in the log. Admin handlers call it before
// answering, so that, on the replica holding the lead, an acknowledged admin
// action is in the audit log; the others leave it to the leader's Run.
func (r *EventRelay) Sync(ctx context.Context) error {
	if !r.log.Leading() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	after, err := r.log.be.Cursor(ctx, relayCursor)
	if err != nil {
		return err
	}
	for {
		evs, err := r.events.AdminEventsAfter(ctx, after, 500)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		for _, ev := range evs {
			var detail map[string]any
			if len(ev.Detail) > 0 && json.Unmarshal(ev.Detail, &detail) != nil {
				// Not an object: kept as it was, under a key of its own.
				detail = map[string]any{"raw": string(ev.Detail)}
			}
			if detail == nil { // none, or JSON null
				detail = map[string]any{}
			}
			if r.ActorEmail != nil && strings.HasPrefix(ev.Actor, "human:") {
				if email := r.ActorEmail(ctx, ev.Actor); email != "" {
					detail["actor_email"] = email
				}
			}
			detail["event_seq"] = ev.Seq // last: the detail cannot override it
			b, _ := json.Marshal(detail)
			kind := KindAdmin
			switch {
			case strings.HasPrefix(ev.Action, "policy."):
				kind = KindPolicy // push, activate, rollback, shadow
			case ev.Actor == ResponseActor:
				kind = KindResponse // restrict, quarantine, revoke, an incident opened
			}
			e := &Entry{Time: ev.Time, Kind: kind, Actor: ev.Actor, Action: ev.Action, Target: ev.Target, Outcome: "done", Detail: b}
			// Durable before the relay's position moves past it, in async mode too.
			if _, err := r.log.AppendDurable(ctx, e); err != nil {
				return err
			}
			after = ev.Seq
		}
		if err := r.log.be.SetCursor(ctx, relayCursor, after); err != nil {
			return err
		}
	}
}

// Run syncs every interval until ctx ends, catching events from other
// replicas and any a failed Sync left behind.
func (r *EventRelay) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.logger.Error("audit: relaying admin events failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
