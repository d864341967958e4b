package sandbox

import "syscall"

// cloneVM reports whether cloneChild can start a CLONE_VM child.
const cloneVM = true

// cloneChild is clone(2) with flags and nothing else, for forkChild
// (clone_linux_amd64.s). It is called directly, not through an ABI
// wrapper, whose frame a CLONE_VM child would overwrite.
func cloneChild(flags uintptr) (pid uintptr, err syscall.Errno)
