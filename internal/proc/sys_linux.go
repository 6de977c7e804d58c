package proc

import "syscall"

// sysProcAttr puts the child in its own process group, so that a signal to
// the group reaches anything it starts, and kills it if this process dies
// first, so that no replica is ever orphaned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
