//go:build !linux

package proc

import "syscall"

// sysProcAttr puts the child in its own process group. Only Linux can tie a
// child's life to its parent's; elsewhere a killed parent leaves orphans.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
