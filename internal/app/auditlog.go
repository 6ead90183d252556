package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/audit/pglog"
	"github.com/warden-run/warden/internal/config"
	"github.com/warden-run/warden/internal/identity"
	"github.com/warden-run/warden/internal/store"
)

const (
	metaCheckpointKey  = "audit_checkpoint_key"
	checkpointKeyLabel = "audit checkpoint key"
)

// checkpointSigner loads the audit log's signing key, sealed under the
// master key in the store, making it on the deployment's first start. The
// key, and the origin it names, stay the same for the log's whole life.
func checkpointSigner(ctx context.Context, ms store.MetaStore, mk *identity.MasterKey, origin string, log *slog.Logger) (*audit.CheckpointSigner, error) {
	sealed, err := ms.Meta(ctx, metaCheckpointKey)
	if errors.Is(err, store.ErrNotFound) {
		skey, _, err := audit.NewCheckpointKey(origin)
		if err != nil {
			return nil, err
		}
		if _, err := ms.PutMetaIfAbsent(ctx, metaCheckpointKey, mk.Seal([]byte(skey), checkpointKeyLabel)); err != nil {
			return nil, fmt.Errorf("audit checkpoint key: %w", err)
		}
		// Another replica may have stored its key first: use whichever is there.
		sealed, err = ms.Meta(ctx, metaCheckpointKey)
		if err != nil {
			return nil, fmt.Errorf("audit checkpoint key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	skey, err := mk.Open(sealed, checkpointKeyLabel)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	s, err := audit.NewCheckpointSigner(string(skey))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkOrigin refuses a configured audit.origin that is not the log's: the
// name is fixed with the log's key, for its whole life.
func checkOrigin(s *audit.CheckpointSigner, origin string) error {
	if s.Origin() != origin {
		return fmt.Errorf("audit.origin is %q, but this deployment's audit log is named %q, fixed for the log's life (its checkpoints are signed under it): set audit.origin: %s", origin, s.Origin(), s.Origin())
	}
	return nil
}

// auditAppended is the change feed's announcement of new entries in the
// shared audit log.
var auditAppended = func() string {
	b, _ := json.Marshal(store.Change{Kind: store.ChangeAudit})
	return string(b)
}()

// auditBackend opens the audit log's backend that the configuration names:
// with a PostgreSQL store (pool is its connections), the audit tables in the
// same database, shared by every replica, every append announced on the
// store's change feed (notify, its channel); otherwise files in
// <data>/audit.
func auditBackend(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, notify string, log *slog.Logger) (audit.Backend, error) {
	// A nil *Log in the interface would not be nil: every branch returns
	// a nil interface with its error.
	if cfg.Store != "" {
		b, err := pglog.Open(ctx, pglog.Config{Notify: notify, NotifyPayload: auditAppended}, pool)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	st, err := archiveStore(cfg.Audit.Archive)
	if err != nil {
		return nil, err
	}
	b, err := filelog.Open(filelog.Config{Dir: filepath.Join(cfg.Data, "audit"), Logger: log, SegmentEntries: cfg.Audit.SegmentEntries, Archive: st})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// adminEvents hands the store's record of admin actions to the audit log's
// relay, which declares what it reads in its own terms.
type adminEvents struct{ events store.EventStore }

func (a adminEvents) AdminEventsAfter(ctx context.Context, seq int64, limit int) ([]audit.AdminEvent, error) {
	evs, err := a.events.Events(ctx, store.EventFilter{After: seq, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]audit.AdminEvent, len(evs))
	for i, ev := range evs {
		out[i] = audit.AdminEvent{Seq: ev.Seq, Time: ev.Time, Actor: ev.Actor, Action: ev.Action, Target: ev.Target, Detail: ev.Detail}
	}
	return out, nil
}
