package policy

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/warden-run/warden/internal/store"
)

// Reasons a push is refused, as recorded and as the HTTP API's error codes.
const (
	RefusedInvalidRequest = "invalid_request"
	RefusedBusy           = "busy"
	RefusedInvalidBundle  = "invalid_bundle"
	RefusedTestsFailed    = "tests_failed"
	RefusedTestsStopped   = "tests_stopped"
	RefusedError          = "error"
)

// PushRefusal is a refused push, as it is recorded.
type PushRefusal struct {
	// Reason is why, when the push was refused before its bundle was read
	// (RefusedInvalidRequest, RefusedBusy); otherwise it follows from Err.
	Reason string
	// Message is the push's message, if it came that far.
	Message string
	// Bundle is the pushed bundle, if it was read: its digest, number of
	// files and size are recorded, never its content.
	Bundle *Bundle
	// Err is why; a *TestsFailedError carries the test report.
	Err error
}

// RefusalReason is the reason recorded for a push refused with err.
func RefusalReason(err error) string {
	var failed *TestsFailedError
	switch {
	case errors.As(err, &failed):
		return RefusedTestsFailed
	case errors.Is(err, ErrTestsStopped):
		return RefusedTestsStopped
	case errors.Is(err, ErrInvalidBundle):
		return RefusedInvalidBundle
	case errors.Is(err, ErrBusy):
		return RefusedBusy
	}
	return RefusedError
}

// RecordRefusedPush records a refused push as the admin event
// policy.push_refused, which reaches the audit log as a push that got in
// does: who, when, which bundle (its digest) and why. Nothing of the
// bundle's content is recorded, and OPA's messages quote it, so "why" is
// the reason, the limit that was exceeded, where OPA found the problems
// (file, line and error code), the test counts, or what stopped the
// tests. A failure to record is logged.
func (r *Registry) RecordRefusedPush(ctx context.Context, actor string, p PushRefusal) {
	detail := map[string]any{"reason": p.Reason}
	if p.Reason == "" {
		detail["reason"] = RefusalReason(p.Err)
	}
	if p.Message != "" {
		detail["message"] = truncate(p.Message, 1024)
	}
	target := ""
	if p.Bundle != nil {
		target = p.Bundle.Digest()
		total := 0
		for _, c := range p.Bundle.Files {
			total += len(c)
		}
		detail["files"], detail["bytes"] = len(p.Bundle.Files), total
	}
	var (
		limit   *LimitError
		invalid *BundleError
		failed  *TestsFailedError
		stopped *TestsStoppedError
	)
	switch {
	case errors.As(p.Err, &limit):
		detail["limit"], detail["size"], detail["max"] = limit.Key, limit.Size, limit.Max
	case errors.As(p.Err, &invalid):
		if len(invalid.Where) > 0 {
			detail["where"] = invalid.Where
		}
	case errors.As(p.Err, &failed):
		c := failed.Report.Counts()
		detail["tests_passed"], detail["tests_failed"], detail["tests_errored"] = c.Pass, c.Fail, c.Error
		detail["cases_passed"], detail["cases_failed"] = c.CasesPass, c.CasesFail
	case errors.As(p.Err, &stopped):
		detail["stopped"], detail["limit"] = stopped.Reason, stopped.Limit
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.st.RecordEvent(ctx, event(store.Time(r.now()), actor, "policy.push_refused", target, detail)); err != nil {
		r.log.Error("policy: recording a refused push failed", "actor", actor, "version", target, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
