package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// SignIn implements store.HumanStore.
func (s *Store) SignIn(ctx context.Context, h store.Human, sess store.HumanSession, ev store.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var data string
		err := tx.QueryRowContext(ctx, `SELECT data FROM humans WHERE id = ?`, h.ID).Scan(&data)
		switch {
		case err == nil:
			var old store.Human
			if json.Unmarshal([]byte(data), &old) == nil && !old.FirstSeen.IsZero() {
				h.FirstSeen = old.FirstSeen
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read human: %w", err)
		}
		hb, _ := json.Marshal(h)
		if _, err := tx.ExecContext(ctx, `INSERT INTO humans (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data`, h.ID, string(hb)); err != nil {
			return fmt.Errorf("write human: %w", err)
		}
		sb, _ := json.Marshal(sess)
		_, err = tx.ExecContext(ctx, `INSERT INTO human_sessions (digest, human_id, expires_at, data) VALUES (?, ?, ?, ?)`,
			sess.Digest, h.ID, micros(sess.ExpiresAt), string(sb))
		if isConstraint(err) {
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
	err := s.r.QueryRowContext(ctx, `SELECT s.data, h.data FROM human_sessions s JOIN humans h ON h.id = s.human_id WHERE s.digest = ?`, digest).Scan(&sd, &hd)
	if errors.Is(err, sql.ErrNoRows) {
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
	return s.tx(ctx, func(tx *sql.Tx) error {
		var data string
		err := tx.QueryRowContext(ctx, `SELECT data FROM human_sessions WHERE digest = ?`, digest).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
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
		if _, err := tx.ExecContext(ctx, `UPDATE human_sessions SET data = ? WHERE digest = ?`, string(b), digest); err != nil {
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
	err := s.r.QueryRowContext(ctx, `SELECT data FROM humans WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.r.QueryContext(ctx, `SELECT data FROM humans ORDER BY id`)
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
