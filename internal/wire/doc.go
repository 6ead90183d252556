// Package wire is Warden's decision API as enforcement points speak it:
// the request and answer types, the rules for reading an agent's
// credentials, address, path and arguments from an HTTP request, and a
// client of a Warden server's decision endpoints that never follows a
// redirect. The Go SDK's middleware and Warden's own enforcement points
// both use it, so that each rule exists once.
package wire
