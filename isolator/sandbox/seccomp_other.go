//go:build !amd64

package sandbox

// Only x86_64 has a system call table here; installSeccomp refuses to run
// a job elsewhere rather than run it unfiltered.
const auditArch = 0

var deniedCalls, enosysCalls []uintptr
