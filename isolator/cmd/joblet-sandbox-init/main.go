// Command joblet-sandbox-init is a job's init (and CheckUserNS's probe), and nothing
// else: the isolator seals a copy of it at start and runs every job's init
// from that copy. It links only the sandbox package, so it starts in a
// fraction of the isolator's time and maps a fraction of its size, once
// per job. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

func main() {
	// One P: the init mostly waits (for the job, for signals to forward),
	// and each P costs resident memory for the job's life (its caches, and
	// the threads more Ps wake); it starts with one per CPU, as its
	// environment is empty. The job's command gets its own environment.
	runtime.GOMAXPROCS(1)
	if sandbox.IsInit() {
		sandbox.Init() // never returns
	}
	fmt.Fprintln(os.Stderr, "joblet-sandbox-init: the isolator runs this as a job's init; it is not meant to be run by hand")
	os.Exit(2)
}
