package monitor

import (
	"encoding/json"
	"slices"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/jsonscan"
)

// scanLeaf is DecodeLeaf's fast reading: one pass over the entry's bytes,
// no reflection, and nothing built of the input but what the model reads.
// The monitor reads every entry the log gets, so this is on the path of
// every call an enforcement point records.
//
// It reads what the log writes (the canonical form), and gives up
// (jsonscan.ErrGiveUp) on whatever the reflection-based reading might read
// otherwise: a member named twice, a member name in another case than the
// field's, a value of another type. DecodeLeaf then reads the entry the
// slow way, so both always agree (FuzzDecodeLeaf).
func scanLeaf(b []byte) (Event, bool, error) {
	s := jsonscan.New(b)
	var e audit.Entry
	var in *recordedInput
	var res *resourceRef
	err := s.Fields(entryMembers, func(i int) error {
		var err error
		switch entryMembers[i] {
		case "action":
			e.Action, err = s.Str()
		case "agent":
			e.Agent, err = s.Str()
		case "detail":
			e.Detail, err = s.Raw()
		case "index":
			e.Index, err = s.Int()
		case "input":
			in, err = input(s)
		case "kind":
			var k string
			k, err = s.Str()
			e.Kind = audit.Kind(k)
		case "outcome":
			e.Outcome, err = s.Str()
		case "reasons":
			e.Reasons, err = s.Strs()
		case "resource":
			res, err = resource(s)
		case "target":
			e.Target, err = s.Str()
		case "time":
			var raw []byte
			if raw, err = s.Raw(); err == nil {
				err = e.Time.UnmarshalJSON(raw)
			}
		case "latency_us":
			_, err = s.Int()
		default:
			_, err = s.Str()
		}
		return err
	})
	if err == nil && !s.End() {
		err = jsonscan.ErrGiveUp
	}
	if err != nil {
		return Event{}, false, err
	}
	ev, ok := decode(&e, in, res)
	return ev, ok, nil
}

// The members of an entry (audit.Entry's fields): the model reads some,
// the others are read for their type, as encoding/json reads them.
var entryMembers = []string{"action", "actor", "agent", "decision_id", "detail", "enforcement_point", "index", "input",
	"input_digest", "kind", "latency_us", "outcome", "policy_version", "prev", "reasons", "resource", "target", "time"}

// resource reads an entry's resource: null is nil, as encoding/json sets
// the pointer.
func resource(s *jsonscan.Scanner) (*resourceRef, error) {
	if s.Null() {
		return nil, nil
	}
	r := new(resourceRef)
	return r, s.Fields([]string{"kind", "id"}, func(i int) (err error) {
		if i == 0 {
			r.Kind, err = s.Str()
		} else {
			r.ID, err = s.Str()
		}
		return err
	})
}

// input reads what the model needs of a recorded input (recordedInput).
func input(s *jsonscan.Scanner) (*recordedInput, error) {
	if s.Null() {
		return nil, nil
	}
	in := new(recordedInput)
	return in, s.Fields([]string{"agent", "args", "resource", "context"}, func(i int) (err error) {
		switch i {
		case 0:
			return s.Fields([]string{"roles"}, func(int) error {
				in.Agent.Roles, err = s.Strs()
				return err
			})
		case 1:
			return args(s, in)
		case 2:
			return s.Fields([]string{"attributes"}, func(int) error { return attributes(s, in) })
		default:
			c := &in.Context
			return s.Fields([]string{"source", "session", "delegation"}, func(i int) error {
				switch i {
				case 0:
					return s.Fields([]string{"ip", "region"}, func(i int) error {
						if i == 0 {
							c.Source.IP, err = s.Str()
						} else {
							c.Source.Region, err = s.Str()
						}
						return err
					})
				case 1:
					return s.Fields([]string{"taints"}, func(int) error {
						c.Session.Taints, err = s.Strs()
						return err
					})
				default:
					c.Delegation, err = s.Strs()
					return err
				}
			})
		}
	})
}

// args reads the input's arguments: their names, when they are an
// object, as fromInput would read them (Args is left empty).
func args(s *jsonscan.Scanner, in *recordedInput) error {
	in.argsRead = true
	if s.Next() != '{' {
		return s.Skip()
	}
	keys := in.argKeys[:0]
	err := s.Object(func(key []byte) error {
		keys = append(keys, string(key))
		return s.Skip()
	})
	slices.Sort(keys)
	in.argKeys = slices.Compact(keys)
	return err
}

// attributes reads the resource's attributes the model reads (egress,
// external, trust_domain) as encoding/json reads them into a map of raw
// values: by exact names, a name twice being the later value.
func attributes(s *jsonscan.Scanner, in *recordedInput) error {
	if s.Null() {
		in.Resource.Attributes = nil
		return nil
	}
	if s.Next() != '{' {
		return jsonscan.ErrGiveUp
	}
	a := map[string]json.RawMessage{}
	in.Resource.Attributes = a
	return s.Object(func(key []byte) error {
		switch string(key) {
		case "egress", "external", "trust_domain":
			raw, err := s.Raw()
			a[string(key)] = raw
			return err
		}
		return s.Skip()
	})
}
