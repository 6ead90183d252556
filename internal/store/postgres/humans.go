package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-run/warden/internal/store"
)

// SignIn implements store.HumanStore.
func (s *Store) SignIn(ctx context.Context, h store.Human, sess store.HumanSession, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data string
		err := tx.QueryRow(ctx, `SELECT data FROM humans WHERE id = $1 FOR UPDATE`, h.ID).Scan(&data)
		switch {
		case err == nil:
			var old store.Human
			if json.Unmarshal([]byte(data), &old) == nil && !old.FirstSeen.IsZero() {
				h.FirstSeen = old.FirstSeen
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read human: %w", err)
		}
		hb, _ := json.Marshal(h)
		if _, err := tx.Exec(ctx, `INSERT INTO humans (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = excluded.data`, h.ID, string(hb)); err != nil {
			return fmt.Errorf("write human: %w", err)
		}
		sb, _ := json.Marshal(sess)
		_, err = tx.Exec(ctx, `INSERT INTO human_sessions (digest, human_id, expires_at, data) VALUES ($1, $2, $3, $4)`,
			sess.Digest, h.ID, sess.ExpiresAt, string(sb))
		if isUniqueViolation(err) {
			return fmt.Errorf("session: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("write session: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
}

// HumanSession implements store.HumanStore.
func (s *Store) HumanSession(ctx context.Context, digest string) (store.HumanSession, store.Human, error) {
	var sd, hd string
	err := s.pool.QueryRow(ctx, `SELECT s.data, h.data FROM human_sessions s JOIN humans h ON h.id = s.human_id WHERE s.digest = $1`, digest).Scan(&sd, &hd)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.HumanSession{}, store.Human{}, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.HumanSession{}, store.Human{}, fmt.Errorf("read session: %w", err)
	}
	var sess store.HumanSession
	var h store.Human
	if json.Unmarshal([]byte(sd), &sess) != nil || json.Unmarshal([]byte(hd), &h) != nil {
		return store.HumanSession{}, store.Human{}, errors.New("read session: corrupt record")
	}
	return sess, h, nil
}

// RevokeHumanSession implements store.HumanStore.
func (s *Store) RevokeHumanSession(ctx context.Context, digest string, t time.Time, ev store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data string
		err := tx.QueryRow(ctx, `SELECT data FROM human_sessions WHERE digest = $1 FOR UPDATE`, digest).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("session: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read session: %w", err)
		}
		var sess store.HumanSession
		if err := json.Unmarshal([]byte(data), &sess); err != nil {
			return fmt.Errorf("read session: %w", err)
		}
		if sess.RevokedAt.IsZero() {
			sess.RevokedAt = store.Time(t)
		}
		b, _ := json.Marshal(sess)
		if _, err := tx.Exec(ctx, `UPDATE human_sessions SET data = $1 WHERE digest = $2`, string(b), digest); err != nil {
			return fmt.Errorf("write session: %w", err)
		}
		if ev.Action != "" {
			return insertEvent(ctx, tx, ev)
		}
		return nil
	})
}

// Human implements store.HumanStore.
func (s *Store) Human(ctx context.Context, id string) (store.Human, error) {
	var data string
	err := s.pool.QueryRow(ctx, `SELECT data FROM humans WHERE id = $1`, id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Human{}, fmt.Errorf("human %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Human{}, fmt.Errorf("read human: %w", err)
	}
	var h store.Human
	if err := json.Unmarshal([]byte(data), &h); err != nil {
		return store.Human{}, fmt.Errorf("read human: %w", err)
	}
	return h, nil
}

// Humans implements store.HumanStore.
func (s *Store) Humans(ctx context.Context) ([]store.Human, error) {
	rows, err := s.pool.Query(ctx, `SELECT data FROM humans ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list humans: %w", err)
	}
	defer rows.Close()
	out := []store.Human{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var h store.Human
		if err := json.Unmarshal([]byte(data), &h); err != nil {
			return nil, fmt.Errorf("read human: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
