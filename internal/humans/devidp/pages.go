package devidp

import (
	"html/template"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// The provider's own pages. op deliberately has no UI: for the authorization
// code flow it redirects the browser to the client's LoginURL and waits for the
// browser to come back to its callback; for the device flow it only tells the
// device where the verification page is (DeviceAuthorizationConfig.UserFormPath).
// Errors are shown in <p role="alert"> with a 4xx status, which the helpers
// in devidp.go report.
var pages = template.Must(template.New("").Parse(`
{{define "signin"}}<!doctype html>
<title>Sign in</title>
{{with .Error}}<p role="alert">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{if .Device}}<label>Code <input name="user_code" value="{{.UserCode}}"></label>{{end}}
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button>Sign in</button>
</form>{{end}}
{{define "consent"}}<!doctype html>
<title>Allow device?</title>
<p>Allow {{.ClientID}} to act as {{.Username}} (scopes: {{range .Scopes}}{{.}} {{end}})?</p>
<form method="post" action="/device/confirm">
<button name="action" value="allow">Allow</button>
<button name="action" value="deny">Deny</button>
</form>{{end}}
{{define "message"}}<!doctype html>
<title>Device</title>
<p{{if .Error}} role="alert"{{end}}>{{.Text}}</p>{{end}}
`))

type signinPage struct {
	Action, UserCode, Error string
	Device                  bool // ask for the user code too
}

type message struct {
	Text  string
	Error bool
}

func render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, data)
}

// loginPage is the client's LoginURL: /login?authRequestID=<op's request ID>.
// A correct password marks the request done and sends the browser back to
// op's callback, which redirects to the client with the code.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("authRequestID")
	page := signinPage{Action: r.URL.String()}
	switch r.Method {
	case http.MethodGet:
		render(w, http.StatusOK, "signin", page)
	case http.MethodPost:
		if err := p.store.login(id, r.PostFormValue("username"), r.PostFormValue("password")); err != nil {
			page.Error = err.Error()
			render(w, http.StatusUnauthorized, "signin", page)
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// deviceStart is the verification URI; verification_uri_complete adds ?user_code=.
func (p *Provider) deviceStart(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, "signin", signinPage{Action: "/device/login", UserCode: r.FormValue("user_code"), Device: true})
}

// deviceLogin checks the password and the user code, then asks for consent.
// Who signed in for which code is kept server-side under a random ticket in
// a cookie, so the consent answer cannot name another user.
func (p *Provider) deviceLogin(w http.ResponseWriter, r *http.Request) {
	userCode := r.PostFormValue("user_code")
	page := signinPage{Action: "/device/login", UserCode: userCode, Device: true}
	u, err := p.store.checkPassword(r.PostFormValue("username"), r.PostFormValue("password"))
	if err != nil {
		page.Error = err.Error()
		render(w, http.StatusUnauthorized, "signin", page)
		return
	}
	state, err := p.store.pendingDevice(userCode)
	if err != nil {
		page.Error = err.Error()
		render(w, http.StatusBadRequest, "signin", page)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "device_consent", Value: p.store.newConsent(userCode, u.ID), Path: "/device", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	render(w, http.StatusOK, "consent", map[string]any{"ClientID": state.ClientID, "Username": u.Username, "Scopes": state.Scopes})
}

// deviceConfirm records allow or deny for the ticket's user code.
func (p *Provider) deviceConfirm(w http.ResponseWriter, r *http.Request) {
	var consent deviceConsent
	cookie, err := r.Cookie("device_consent")
	if err == nil {
		consent, err = p.store.takeConsent(cookie.Value)
	}
	if err != nil {
		render(w, http.StatusBadRequest, "message", message{Text: "Sign in first", Error: true})
		return
	}
	action := r.PostFormValue("action")
	if action != "allow" && action != "deny" {
		render(w, http.StatusBadRequest, "message", message{Text: `action must be "allow" or "deny"`, Error: true})
		return
	}
	if err := p.store.decideDevice(consent.userCode, consent.userID, action == "allow"); err != nil {
		render(w, http.StatusBadRequest, "message", message{Text: err.Error(), Error: true})
		return
	}
	text := "Device refused."
	if action == "allow" {
		text = "Device authorized. You may return to your device."
	}
	render(w, http.StatusOK, "message", message{Text: text})
}
