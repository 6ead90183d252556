package enforce

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// Deadlines bounds, per request, the time its body may take to arrive
// and its answer to be written, so that a client trickling a body, or
// reading an answer slowly, cannot hold a connection: l.BodyTimeout from
// the end of the headers for the body, l.WriteTimeout for the answer, and
// l.StreamTimeout for an answer that is an event stream.
func Deadlines(l Limits, h http.Handler) http.Handler {
	l = l.WithDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		rc.SetWriteDeadline(now.Add(l.WriteTimeout))
		// A request without a body has nothing more to read: the server
		// watches the connection for the client going, and a read
		// deadline would cut a long answer short. A body's deadline ends
		// once it has been read, for the same reason.
		if r.Body != nil && r.Body != http.NoBody {
			rc.SetReadDeadline(now.Add(l.BodyTimeout))
			r.Body = &bodyDeadline{ReadCloser: r.Body, rc: rc}
		}
		h.ServeHTTP(&streamDeadline{ResponseWriter: w, rc: rc, stream: l.StreamTimeout}, r)
	})
}

// bodyDeadline lifts the read deadline once the body has been read.
type bodyDeadline struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *bodyDeadline) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// streamDeadline gives an answer that turns out to be an event stream the
// stream's bound instead of an answer's.
type streamDeadline struct {
	http.ResponseWriter
	rc     *http.ResponseController
	stream time.Duration
	wrote  bool
}

func (w *streamDeadline) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		if strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
			w.rc.SetWriteDeadline(time.Now().Add(w.stream))
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *streamDeadline) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streams through.
func (w *streamDeadline) Flush() { w.rc.Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (w *streamDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }
