package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Why a builtin is not available to Warden policies.
const (
	removedOutside = "reaches outside the input and the bundle, so a decision would not replay the same"
	removedSecret  = "handles private keys or signing credentials, which have no place in a policy bundle"
	removedCost    = "can run far past the evaluation timeout, or use memory without bound, in one call that cannot be interrupted"
	removedUseless = "has no use in a decision and costs more than the timeout on large arguments"
)

// removedBuiltins are the OPA builtins a Warden policy cannot call, in
// live decisions and in tests alike, with why. Evaluation can be stopped
// between expressions only: a builtin is kept when one call costs about as
// much as reading its arguments once, or OPA interrupts it (numbers.range,
// net.cidr_expand, concat, replace, regex.replace check for cancellation
// while they run), so that the evaluation timeout and the bundle and input
// limits bound it.
var removedBuiltins = map[string]string{
	"http.send":          removedOutside,
	"net.lookup_ip_addr": removedOutside,
	"opa.runtime":        removedOutside,

	"providers.aws.sign_req":            removedSecret,
	"io.jwt.encode_sign":                removedSecret,
	"io.jwt.encode_sign_raw":            removedSecret,
	"crypto.parse_private_keys":         removedSecret,
	"crypto.x509.parse_keypair":         removedSecret,
	"crypto.x509.parse_rsa_private_key": removedSecret,

	// Measured on 256 KiB of data: yaml.marshal 1.4 s against a 50 ms
	// timeout; the others grow faster than their arguments.
	"yaml.marshal":              removedCost,
	"json.marshal_with_options": removedCost, // an indent is repeated on every line, at every depth
	"strings.render_template":   removedCost, // Go templates nest loops
	"graph.reachable_paths":     removedCost, // the number of paths is exponential
	"regex.globs_match":         removedCost, // intersects two patterns, exponential at worst
	"json.match_schema":         removedCost, // JSON Schema combinators nest exponentially
	"json.verify_schema":        removedCost,
	"graphql.is_valid":          removedCost, // query validation grows faster than the query
	"graphql.parse":             removedCost,
	"graphql.parse_and_verify":  removedCost,
	"graphql.parse_query":       removedCost,
	"graphql.parse_schema":      removedCost,
	"graphql.schema_is_valid":   removedCost,
	"rego.parse_module":         removedUseless,
}

// capabilities are this OPA's builtins without the removed ones, and no
// network.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(slices.Clone(c.Builtins), func(b *ast.Builtin) bool {
		_, removed := removedBuiltins[b.Name]
		return removed
	})
	c.AllowNet = []string{}
	return c
}

// Builtins lists the builtins a Warden policy can call, by name, operators
// (plus, eq, ...) and OPA's internal ones left out.
func Builtins() []string {
	var out []string
	for _, b := range capabilities().Builtins {
		if b.Infix == "" && !strings.HasPrefix(b.Name, "internal.") {
			out = append(out, b.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// RemovedBuiltins lists the OPA builtins a Warden policy cannot call, by
// name, with why.
func RemovedBuiltins() map[string]string { return maps.Clone(removedBuiltins) }

// MaxFormatWidth is the largest width or precision a sprintf format may
// ask for.
const MaxFormatWidth = 100

// checkCalls refuses, with a message that says why, a call of a removed
// builtin (the compiler would only say "undefined function"), and a
// sprintf whose format is not a string literal within MaxFormatWidth: Go's
// fmt pads a single verb to up to a million bytes in one call that cannot
// be interrupted, so a format from data or input ("%999999d" a thousand
// times) could ask for gigabytes.
func checkCalls(m *ast.Module) ast.Errors {
	var errs ast.Errors
	check := func(op *ast.Term, args []*ast.Term, loc *ast.Location) {
		name := op.String()
		if why, removed := removedBuiltins[name]; removed {
			errs = append(errs, ast.NewError(ast.TypeErr, loc, "%s is not available in Warden policies: it %s", name, why))
			return
		}
		if name != ast.Sprintf.Name || len(args) == 0 {
			return
		}
		format, ok := args[0].Value.(ast.String)
		if !ok {
			errs = append(errs, ast.NewError(ast.TypeErr, loc, "sprintf: the format must be a string literal (a format from data or input could ask for unbounded output)"))
		} else if err := checkFormat(string(format)); err != nil {
			errs = append(errs, ast.NewError(ast.TypeErr, loc, "sprintf: %v", err))
		}
	}
	ast.WalkExprs(m, func(e *ast.Expr) bool {
		if e.IsCall() {
			terms := e.Terms.([]*ast.Term)
			check(terms[0], terms[1:], e.Location)
		}
		// "f(x) with concat as sprintf" calls sprintf with whatever f
		// passes, a format from input included: a builtin checked or
		// removed here cannot be the value of a with.
		for _, w := range e.With {
			name := w.Value.String()
			if _, removed := removedBuiltins[name]; removed || name == ast.Sprintf.Name {
				errs = append(errs, ast.NewError(ast.TypeErr, w.Location, "with ... as %s: %s cannot replace another function in Warden policies (its arguments would not be checked)", name, name))
			}
		}
		return false
	})
	ast.WalkTerms(m, func(t *ast.Term) bool {
		if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
			check(call[0], call[1:], t.Location)
		}
		return false
	})
	return errs
}

// checkFormat reads a Go format's verbs as fmt does (flags, an argument
// index, a width, a precision) and refuses a width or precision above
// MaxFormatWidth, or one taken from the arguments.
func checkFormat(f string) error {
	i := 0
	index := func() { // an explicit argument index: [n]
		if i < len(f) && f[i] == '[' {
			if end := strings.IndexByte(f[i:], ']'); end > 0 {
				i += end + 1
			}
		}
	}
	number := func() error {
		index()
		if i < len(f) && f[i] == '*' {
			return fmt.Errorf("a width or precision taken from the arguments (*) is not allowed")
		}
		start := i
		for i < len(f) && f[i] >= '0' && f[i] <= '9' {
			i++
		}
		if n, err := strconv.Atoi(f[start:i]); i > start && (err != nil || n > MaxFormatWidth) {
			return fmt.Errorf("width or precision %s: at most %d", f[start:i], MaxFormatWidth)
		}
		return nil
	}
	for i < len(f) {
		if f[i] != '%' {
			i++
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			i++
			continue
		}
		for i < len(f) && strings.IndexByte("-+# 0", f[i]) >= 0 {
			i++
		}
		if err := number(); err != nil {
			return err
		}
		if i < len(f) && f[i] == '.' {
			i++
			if err := number(); err != nil {
				return err
			}
		}
	}
	return nil
}
