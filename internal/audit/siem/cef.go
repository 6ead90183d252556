package siem

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/warden-run/warden/internal/audit"
)

// CEF renders an entry in ArcSight Common Event Format:
// CEF:0|Warden|Warden|1|<kind>:<action>|<action>|<severity>|<extensions>
func CEF(e *audit.Entry) string {
	sev := 3
	switch {
	case e.Outcome == "deny":
		sev = 6
	case e.Kind == audit.KindResponse:
		sev = 8
	case e.Kind == audit.KindAdmin, e.Kind == audit.KindPolicy:
		sev = 4
	}
	ext := []string{
		"rt=" + strconv.FormatInt(e.Time.UnixMilli(), 10),
		"cn1Label=index", "cn1=" + strconv.FormatInt(e.Index, 10),
		"act=" + cefExt(e.Action),
	}
	add := func(k, v string) {
		if v != "" {
			ext = append(ext, k+"="+cefExt(v))
		}
	}
	add("suser", e.Agent)
	if e.Agent == "" {
		add("suser", e.Actor)
	}
	add("outcome", e.Outcome)
	add("duser", e.Target)
	if len(e.Resource) > 0 {
		add("request", string(e.Resource))
	}
	if e.DecisionID != "" {
		ext = append(ext, "cs1Label=decisionId", "cs1="+cefExt(e.DecisionID))
	}
	if e.PolicyVersion != "" {
		ext = append(ext, "cs2Label=policyVersion", "cs2="+cefExt(e.PolicyVersion))
	}
	if len(e.Reasons) > 0 {
		add("reason", strings.Join(e.Reasons, "; "))
	}
	return fmt.Sprintf("CEF:0|Warden|Warden|1|%s|%s|%d|%s",
		cefHeader(string(e.Kind)+":"+e.Action), cefHeader(e.Action), sev, strings.Join(ext, " "))
}

// cefHeader escapes a header field: backslash and pipe, newlines as
// spaces, and anything else not graphic (see audit.Visible).
func cefHeader(s string) string {
	return audit.Visible(cefHeaderEscaper.Replace(s))
}

// cefExt escapes an extension value: backslash, equals sign and newlines,
// and anything else not graphic (see audit.Visible).
func cefExt(s string) string {
	return audit.Visible(cefExtEscaper.Replace(s))
}

var (
	cefHeaderEscaper = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\n", " ", "\r", " ")
	cefExtEscaper    = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\n", `\n`, "\r", `\r`)
)
