package mcpgw

import (
	"fmt"
	"strings"
)

// The environment of a command the gateway or a wrap starts is bare: a
// few harmless variables of its own (passedEnv) and those its
// configuration names. Warden's own variables (WARDEN_ADMIN_TOKEN,
// WARDEN_SERVER, ...) never reach it, not even with inherit_env: the
// server it starts is the one it polices.

// wardenVariable reports whether an environment variable is Warden's own.
// Windows does not tell case apart in names: neither does this.
func wardenVariable(name string) bool {
	return len(name) >= len("WARDEN_") && strings.EqualFold(name[:len("WARDEN_")], "WARDEN_")
}

// CheckEnvName says what is wrong with the name of a variable a
// configuration gives a command, if anything.
func CheckEnvName(name string) error {
	switch {
	case name == "" || strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("%q is not a variable name", name)
	case wardenVariable(name):
		return fmt.Errorf("%s: Warden's own variables never reach the server it polices", name)
	}
	return nil
}
