package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"
)

// apiError is the admin API's refusal, as it said it.
type apiError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the API answered %d", e.Status)
	}
	return e.Message
}

// answer keeps one in-process API answer.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }
func (a *answer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}
func (a *answer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}

// call makes an admin API request as the signed-in person and decodes
// its answer into out (when not nil). A refusal is an *apiError.
func (c *Console) call(r *http.Request, v view, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	if c.d.API == nil {
		return &apiError{Status: http.StatusServiceUnavailable, Message: "this console has no admin API to call"}
	}
	a := &answer{header: http.Header{}}
	c.d.API(r, v.token, method, path, body, a)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.status >= 300 {
		e := &apiError{Status: a.status}
		json.Unmarshal(a.body.Bytes(), e)
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(a.body.Bytes(), out)
}

// get reads path from the API into out.
func (c *Console) get(r *http.Request, v view, path string, out any) error {
	return c.call(r, v, http.MethodGet, path, nil, out)
}

// setFlash keeps the outcome of a change for the next page of session sid.
func (c *Console) setFlash(sid string, f flash) {
	c.mu.Lock()
	if s, ok := c.sessions[sid]; ok {
		s.flash = f
	}
	c.mu.Unlock()
}

func (c *Console) takeFlash(sid string) flash {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[sid]
	if !ok {
		return flash{}
	}
	f := s.flash
	s.flash = flash{}
	return f
}

// done records the outcome of a change and sends the browser to back
// (a path of the console), as a post must end.
func (c *Console) done(w http.ResponseWriter, r *http.Request, v view, back string, err error, ok string) {
	f := flash{Message: ok}
	if err != nil {
		f = flash{Message: "Refused: " + err.Error(), Failed: true}
	}
	c.setFlash(v.sid, f)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// reason reads a change's reason from the form: required, at most 1024
// bytes of text.
func reason(r *http.Request) (string, error) {
	s := r.PostForm.Get("reason")
	switch {
	case s == "":
		return "", fmt.Errorf("a reason is required")
	case len(s) > 1024 || !utf8.ValidString(s):
		return "", fmt.Errorf("the reason must be text of at most 1024 bytes")
	}
	return s, nil
}

// short cuts s to n runes for a table cell.
func short(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// httpError answers a plain-text error, its text passed over for
// characters that reorder or hide text, as the pages are: the message may
// hold what a person typed or an agent named.
func httpError(w http.ResponseWriter, msg string, status int) {
	http.Error(w, string(visible(msg)), status)
}
