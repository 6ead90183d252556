//go:build unix

package mcpgw

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is how to start a wrapped server as the user named (a name or a
// numeric id; empty for the wrap's own user): the process attributes that
// switch to that user, with its groups and none of the wrap's, and the
// variables that name it. A wrap that runs as root must name a user.
func runAs(name string) (*syscall.SysProcAttr, serverUser, error) {
	euid := os.Geteuid()
	if name == "" {
		if euid == 0 {
			return nil, serverUser{}, errors.New("the wrap runs as root, and so would the MCP server, which could then read the agent's key and the enforcement point's credential: name the user it runs as with --user (--user root to run it as root anyway)")
		}
		return nil, serverUser{}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, notID := strconv.Atoi(name); notID != nil {
			return nil, serverUser{}, fmt.Errorf("--user %s: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return nil, serverUser{}, fmt.Errorf("--user %s: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, serverUser{}, fmt.Errorf("--user %s: ids: %w", name, err)
	}
	switch {
	case int(uid) == euid && euid == 0:
		return nil, serverUser{root: true}, nil
	case int(uid) == euid:
		return nil, serverUser{}, nil
	case euid != 0:
		return nil, serverUser{}, fmt.Errorf("--user %s: starting the MCP server as another user needs root, and the wrap runs as uid %d", name, euid)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, serverUser{}, fmt.Errorf("--user %s: groups: %w", name, err)
	}
	groups := make([]uint32, 0, len(ids))
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, serverUser{}, fmt.Errorf("--user %s: group %q: %w", name, id, err)
		}
		groups = append(groups, uint32(g))
	}
	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	return attr, serverUser{env: map[string]string{"HOME": u.HomeDir, "USER": u.Username}}, nil
}
