package devidp

import (
	"context"
	"log/slog"
	"net/http"
)

// servingKey marks the context of every request a Provider serves; op passes
// that context (or one derived from it) to slog when it logs.
type servingKey struct{}

func markRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), servingKey{}, true)))
	})
}

func servingProvider(ctx context.Context) bool {
	return ctx != nil && ctx.Value(servingKey{}) != nil
}

// QuietHandler returns a handler that passes records on to h, except those
// below slog.LevelError logged while a Provider serves a request: op's
// WARN lines for refused requests (wrong code, missing PKCE, a denied device,
// ...) and its INFO line for every poll of a device still waiting for its
// person. ERROR records (op's server errors) still pass, as does everything
// logged outside a Provider's requests.
//
// op logs only through slog.Default, so a program that wants quiet installs
// it there, around a handler of its own:
//
//	slog.SetDefault(slog.New(devidp.QuietHandler(slog.NewTextHandler(os.Stderr, nil))))
//
// Do not wrap the initial slog.Default().Handler(): slog.SetDefault with a
// handler that wraps slog's built-in default handler deadlocks on the first
// record, because both then write through the log package.
func QuietHandler(h slog.Handler) slog.Handler { return quiet{h} }

type quiet struct{ h slog.Handler }

func (q quiet) drops(ctx context.Context, level slog.Level) bool {
	return level < slog.LevelError && servingProvider(ctx)
}

func (q quiet) Enabled(ctx context.Context, level slog.Level) bool {
	return !q.drops(ctx, level) && q.h.Enabled(ctx, level)
}

func (q quiet) Handle(ctx context.Context, r slog.Record) error {
	if q.drops(ctx, r.Level) {
		return nil
	}
	return q.h.Handle(ctx, r)
}

func (q quiet) WithAttrs(attrs []slog.Attr) slog.Handler { return quiet{q.h.WithAttrs(attrs)} }
func (q quiet) WithGroup(name string) slog.Handler       { return quiet{q.h.WithGroup(name)} }
