// Command joblet-shim is a job's shim, and nothing else: the isolator seals
// a copy of it at its first job and starts every job's shim from that copy.
// A shim lives as long as its job, so it links as little as it can
// (package shimproc: no gRPC, no protobuf, no logging library). It
// is also a job's init when joblet-sandbox-init is not installed, as the
// isolator's binary is. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim/shimproc"
)

func main() {
	if sandbox.IsInit() {
		sandbox.Init() // never returns
	}
	if shimproc.IsShim() {
		shimproc.Main() // never returns
	}
	fmt.Fprintln(os.Stderr, "joblet-shim: the isolator runs this as a job's shim; it is not meant to be run by hand")
	os.Exit(2)
}
