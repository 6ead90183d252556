package config

import "testing"

// FuzzDecode: any input either decodes and validates, or is refused with an
// error; never a panic, and a refused input leaves the config unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("identity: {token_ttl: 5m, trust_domains: {prod: {require_dpop: true}}}"))
	f.Add([]byte("server: {addr: '0.0.0.0:1'}\nstore: postgres://x"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Default()
		if err := Decode(&cfg, b, "fuzz"); err != nil {
			if d := Default(); d.Server != cfg.Server || d.Data != cfg.Data || d.Store != cfg.Store {
				t.Fatal("a refused file changed the config")
			}
			return
		}
		_ = cfg.Validate()
	})
}
