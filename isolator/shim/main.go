package shim

import "github.com/joblet-dev/joblet/isolator/shim/shimproc"

// IsShim reports whether this process was started by Start as a job's shim.
func IsShim() bool { return shimproc.IsShim() }

// Main is a job's shim (package shimproc): it runs the job, forwards its
// output and records its result. It never returns.
func Main() { shimproc.Main() }
