package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// groupCommit turns many concurrent small writes into few transactions, so
// that they share one fsync instead of paying one each. apply writes a whole
// batch in one transaction and returns one outcome per item; when the
// transaction itself fails, every item fails with that error.
type groupCommit[T any] struct {
	db    *sql.DB
	apply func(tx *sql.Tx, batch []T) []error
	reqs  chan *groupItem[T]
	stop  chan struct{}
	done  chan struct{}

	closeOnce sync.Once
}

type groupItem[T any] struct {
	v    T
	done chan error
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

var errClosed = errors.New("sqlite: store closed")

func newGroupCommit[T any](db *sql.DB, apply func(*sql.Tx, []T) []error) *groupCommit[T] {
	g := &groupCommit[T]{db: db, apply: apply, reqs: make(chan *groupItem[T], maxGroup),
		stop: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// do queues v for the next transaction and returns once that transaction has
// committed (v is durable) or failed.
func (g *groupCommit[T]) do(ctx context.Context, v T) error {
	it := &groupItem[T]{v: v, done: make(chan error, 1)}
	select {
	case g.reqs <- it:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return errClosed
	}
	// Once queued, wait for the outcome even if ctx ends: the write may commit.
	return <-it.done
}

func (g *groupCommit[T]) run() {
	defer close(g.done)
	items := make([]*groupItem[T], 0, maxGroup)
	vals := make([]T, 0, maxGroup)
	for {
		select {
		case <-g.stop:
			for {
				select {
				case it := <-g.reqs:
					it.done <- errClosed
				default:
					return
				}
			}
		case it := <-g.reqs:
			items = append(items[:0], it)
		drain:
			for len(items) < maxGroup {
				select {
				case it := <-g.reqs:
					items = append(items, it)
				default:
					break drain
				}
			}
			vals = vals[:0]
			for _, it := range items {
				vals = append(vals, it.v)
			}
			errs := g.commit(vals)
			for i, it := range items {
				it.done <- errs[i]
			}
		}
	}
}

func (g *groupCommit[T]) commit(vals []T) []error {
	fail := func(err error) []error {
		errs := make([]error, len(vals))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		return fail(err)
	}
	errs := g.apply(tx, vals)
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return errs
}

func (g *groupCommit[T]) close() {
	g.closeOnce.Do(func() { close(g.stop) })
	<-g.done
}
