//go:build !windows

package platform

import (
	"os/exec"
	"syscall"
)

const rootDir = "/"

func defaultEnv(c Cmd) []string {
	env := []string{"PATH=" + DefaultPath, "LANG=C", "LC_ALL=C"}
	if c.As != nil {
		env = append(env, "HOME="+c.As.Home, "USER="+c.As.Name, "LOGNAME="+c.As.Name)
	}
	return env
}

// runAs makes cmd drop to u's uid, gid and groups before exec.
func runAs(cmd *exec.Cmd, u *User) error {
	groups := make([]uint32, 0, len(u.Groups))
	for _, g := range u.Groups {
		groups = append(groups, uint32(g))
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups}
	return nil
}
