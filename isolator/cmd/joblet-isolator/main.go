// Command joblet-isolator is the isolator daemon: it owns the job registry
// and runs each job in its sandbox. The same binary is each job's shim when
// joblet-shim is not installed beside it, and each job's init when
// joblet-sandbox-init is not.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/service"
	"github.com/joblet-dev/joblet/isolator/shim/shimproc"
	"github.com/joblet-dev/joblet/proto/daemon"
)

func main() {
	if sandbox.IsInit() {
		sandbox.Init() // never returns
	}
	if shimproc.IsShim() {
		shimproc.Main() // never returns
	}
	os.Exit(daemon.Main("isolator", service.Run))
}
