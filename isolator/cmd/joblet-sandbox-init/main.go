// Command joblet-sandbox-init is a job's init and exec stage, and nothing
// else: the isolator seals a copy of it at start and runs every job's init
// from that copy. It links only the sandbox package, so it starts in a
// fraction of the isolator's time and maps a fraction of its size, twice
// per job. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

func main() {
	if sandbox.IsInit() {
		sandbox.Init() // never returns
	}
	fmt.Fprintln(os.Stderr, "joblet-sandbox-init: the isolator runs this as a job's init; it is not meant to be run by hand")
	os.Exit(2)
}
