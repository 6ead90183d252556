package decide

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/warden-run/warden/internal/decide/record"
	"github.com/warden-run/warden/internal/policy"
)

// entryDetail is a decision entry's detail: what the answer alone does not
// say (obligations, what the record leaves out, what was not checked or
// not trusted). It never holds a secret or an argument's value.
type entryDetail map[string]any

// record notes what the recorded input leaves out, when it leaves out
// anything.
func (d entryDetail) record(rec record.Record, recordInput bool) {
	m := map[string]any{}
	if rec.Redacted > 0 {
		m["redacted"] = rec.Redacted
	}
	if rec.Omitted > 0 {
		m["omitted"] = rec.Omitted
	}
	if rec.ArgsOmitted {
		m["args_omitted"] = true
	}
	if rec.Input == nil && recordInput {
		m["input_omitted"] = true
		m["input_bytes"] = rec.Size
	}
	if len(m) > 0 {
		d["record"] = m
	}
}

// evalErrorAttrs are what a log line says of a failed evaluation: the
// reason and, when the engine gives one, where in the policy. Never the
// error's text, which can quote the input (a builtin's error names the
// value it could not take, such as the password in to_number(input.args.password)).
func evalErrorAttrs(err error) []any {
	attrs := []any{"reason", policy.ReasonForError(err)}
	var te *topdown.Error
	if errors.As(err, &te) {
		attrs = append(attrs, "code", te.Code)
		if l := te.Location; l != nil {
			attrs = append(attrs, "at", fmt.Sprintf("%s:%d:%d", l.File, l.Row, l.Col))
		}
	}
	return attrs
}
