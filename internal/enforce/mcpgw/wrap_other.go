//go:build !unix

package mcpgw

import (
	"errors"
	"syscall"
)

// runAs: this system has no users to switch to; the server runs as the
// wrap's user.
func runAs(name string) (*syscall.SysProcAttr, serverUser, error) {
	if name != "" {
		return nil, serverUser{}, errors.New("--user: not supported on this system")
	}
	return nil, serverUser{}, nil
}
